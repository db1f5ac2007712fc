package processor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/schemas"
)

// GrowConfig moves a deployment to a topic set with more partitions (`processor grow`). The partition count of
// signals.raw cannot change in place: the routing key's partition, the processor's state and its changelogs,
// identities and signals.resolved are all placed by hash(key) mod partitions. Instead a new topic set under
// another prefix is created with the larger count, and the old signals.raw is copied into it, each record to
// its key's partition there and in its old order; a processor group on the new prefix then rebuilds every
// visitor's state by processing the copy, exactly as a replay does (README, Running at scale).
type GrowConfig struct {
	Brokers []string
	// From is the old topic set (its prefix; the partition count is read from the cluster).
	From schemas.Config
	// To is the new one: another prefix, its partition count and replication (created if missing).
	To schemas.Config
	// Follow keeps copying what arrives on the old signals.raw until ctx ends; without it Grow returns once it
	// has copied up to the end offsets the old topic had when it started.
	Follow bool
	// KafkaConnOpts are added to every client: TLS, SASL (schemas/kafkaconn).
	KafkaConnOpts []kgo.Opt
	Logger        *slog.Logger
}

// GrowResult counts what one Grow copied.
type GrowResult struct {
	Raw, Rules, Erasures int
}

// ErrGrowConfig means the two topic sets cannot be a move: the same prefix, or fewer partitions.
var ErrGrowConfig = errors.New("invalid grow")

// GrowGroup is the consumer group of the copy on the old signals.raw: its committed offsets are where a later
// Grow goes on, so the copy can run in passes (a bulk pass while ingest writes to the old set, a last one after
// ingest stopped) without copying a record twice.
func GrowGroup(from, to schemas.Config) string { return from.Prefix + "grow-to-" + to.Prefix }

// Grow copies the mapping rules and erasures (whole, each run: compacted and idempotent, so a second copy
// changes nothing) and then signals.raw, exactly once: each batch is produced in a transaction that also commits
// the copy group's offsets on the old topic.
func Grow(ctx context.Context, cfg GrowConfig) (GrowResult, error) {
	var res GrowResult
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if cfg.From.Prefix == cfg.To.Prefix {
		return res, fmt.Errorf("%w: the new topic set needs its own prefix (both %q)", ErrGrowConfig, cfg.To.Prefix)
	}
	base := append([]kgo.Opt{kgo.SeedBrokers(cfg.Brokers...)}, cfg.KafkaConnOpts...)
	admCl, err := kgo.NewClient(base...)
	if err != nil {
		return res, fmt.Errorf("creating admin client: %w", err)
	}
	defer admCl.Close()
	adm := kadm.NewClient(admCl)
	fromRaw, toRaw := cfg.From.Name(schemas.TopicRaw), cfg.To.Name(schemas.TopicRaw)
	td, err := adm.ListTopics(ctx, fromRaw)
	if err != nil || td[fromRaw].Err != nil {
		return res, fmt.Errorf("reading %s: %w", fromRaw, errors.Join(err, td[fromRaw].Err))
	}
	if n := int32(len(td[fromRaw].Partitions)); cfg.To.Partitions < n {
		return res, fmt.Errorf("%w: %d partitions for the new set, fewer than %s's %d", ErrGrowConfig, cfg.To.Partitions, fromRaw, n)
	}
	ensured, err := cfg.To.Ensure(ctx, adm)
	ensured.Log(log)
	if err != nil {
		return res, fmt.Errorf("ensuring the new topics: %w", err)
	}
	for _, t := range []struct {
		base string
		n    *int
	}{{schemas.TopicRules, &res.Rules}, {schemas.TopicErasures, &res.Erasures}} {
		if *t.n, err = copyWhole(ctx, base, adm, cfg.From.Name(t.base), cfg.To.Name(t.base)); err != nil {
			return res, err
		}
	}
	res.Raw, err = copyRaw(ctx, cfg, base, adm, fromRaw, toRaw)
	return res, err
}

// endOffsets returns the offset each partition of topic must be copied up to (its end now), leaving out
// partitions with nothing from start to end.
func endOffsets(ctx context.Context, adm *kadm.Client, topic string) (map[int32]int64, error) {
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("start offsets of %s: %w", topic, err)
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	left := map[int32]int64{}
	var lerr error
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			lerr = fmt.Errorf("end offset of %s/%d: %w", topic, o.Partition, o.Err)
			return
		}
		if s, ok := starts.Lookup(topic, o.Partition); ok && s.Offset < o.Offset {
			left[o.Partition] = o.Offset
		}
	})
	return left, lerr
}

// copyWhole brings a one-partition compacted topic's copy up to date: each record from the start to the current
// end (keys, tombstones, headers and timestamps kept) unless the copy's latest record of its key already says the
// same, so a second run appends nothing and a rule edited between two runs is copied again.
func copyWhole(ctx context.Context, base []kgo.Opt, adm *kadm.Client, from, to string) (int, error) {
	src, err := readWhole(ctx, base, adm, from)
	if err != nil {
		return 0, err
	}
	dst, err := readWhole(ctx, base, adm, to)
	if err != nil {
		return 0, err
	}
	latest := map[string][]byte{}
	for _, r := range dst {
		latest[string(r.Key)] = r.Value
	}
	var recs []*kgo.Record
	for _, r := range src {
		if v, ok := latest[string(r.Key)]; ok && bytes.Equal(v, r.Value) && (v == nil) == (r.Value == nil) {
			continue
		}
		latest[string(r.Key)] = r.Value
		recs = append(recs, copyOf(r, to, 0))
	}
	if len(recs) == 0 {
		return 0, nil
	}
	cl, err := kgo.NewClient(append(base, kgo.RecordPartitioner(kgo.ManualPartitioner()))...)
	if err != nil {
		return 0, fmt.Errorf("creating client: %w", err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return 0, fmt.Errorf("copying %s to %s: %w", from, to, err)
	}
	return len(recs), nil
}

// readWhole reads topic from its start to its current end, read committed.
func readWhole(ctx context.Context, base []kgo.Opt, adm *kadm.Client, topic string) ([]*kgo.Record, error) {
	left, err := endOffsets(ctx, adm, topic)
	if err != nil || len(left) == 0 {
		return nil, err
	}
	cl, err := kgo.NewClient(append(base, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))...)
	if err != nil {
		return nil, fmt.Errorf("creating client: %w", err)
	}
	defer cl.Close()
	var out []*kgo.Record
	for len(left) > 0 {
		fs := cl.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			return nil, fmt.Errorf("reading %s: %w", topic, err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if end, ok := left[r.Partition]; ok && r.Offset < end {
				out = append(out, r)
				if r.Offset+1 >= end {
					delete(left, r.Partition)
				}
			}
		})
	}
	return out, nil
}

func copyOf(r *kgo.Record, topic string, partition int32) *kgo.Record {
	return &kgo.Record{Topic: topic, Partition: partition, Key: r.Key, Value: r.Value, Headers: r.Headers, Timestamp: r.Timestamp}
}

// copyRaw copies signals.raw in transactions that commit the copy group's offsets with the records, each record
// to hash(key) mod the new count (the partitioner ingest and the processor use), in its old partition's order.
func copyRaw(ctx context.Context, cfg GrowConfig, base []kgo.Opt, adm *kadm.Client, from, to string) (int, error) {
	left, err := endOffsets(ctx, adm, from)
	if err != nil {
		return 0, err
	}
	group := GrowGroup(cfg.From, cfg.To)
	if committed, err := adm.FetchOffsets(ctx, group); err == nil {
		committed.Each(func(o kadm.OffsetResponse) {
			if end, ok := left[o.Partition]; ok && o.Topic == from && o.At >= end {
				delete(left, o.Partition) // copied by an earlier pass
			}
		})
	}
	if len(left) == 0 && !cfg.Follow {
		return 0, nil
	}
	sess, err := kgo.NewGroupTransactSession(append(base, kgo.ConsumerGroup(group), kgo.ConsumeTopics(from),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.TransactionalID(group), kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
		kgo.RequiredAcks(kgo.AllISRAcks()))...)
	if err != nil {
		return 0, fmt.Errorf("creating the copy session: %w", err)
	}
	defer sess.Close()
	n := 0
	for cfg.Follow || len(left) > 0 {
		fs := sess.PollFetches(ctx)
		if ctx.Err() != nil {
			if cfg.Follow {
				return n, nil
			}
			return n, ctx.Err()
		}
		if err := fs.Err0(); err != nil {
			return n, fmt.Errorf("reading %s: %w", from, err)
		}
		if fs.NumRecords() == 0 {
			continue
		}
		if err := sess.Begin(); err != nil {
			return n, fmt.Errorf("beginning a copy transaction: %w", err)
		}
		last := map[int32]int64{}
		e := kgo.AbortingFirstErrPromise(sess.Client())
		fs.EachRecord(func(r *kgo.Record) {
			sess.Produce(ctx, copyOf(r, to, 0), e.Promise())
			last[r.Partition] = r.Offset
		})
		perr := e.Err()
		committed, err := sess.End(ctx, perr == nil)
		if err == nil {
			err = perr
		}
		if err != nil {
			return n, fmt.Errorf("copying %s to %s: %w", from, to, err)
		}
		if !committed {
			continue // a rebalance aborted it: the records are read again
		}
		n += fs.NumRecords()
		for p, o := range last {
			if end, ok := left[p]; ok && o+1 >= end {
				delete(left, p)
			}
		}
	}
	return n, nil
}
