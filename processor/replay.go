package processor

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/schemas"
)

// ReplayConfig says where to rewind the processor's group on signals.raw.
type ReplayConfig struct {
	Brokers []string
	Topics  schemas.Config
	Group   string // default <prefix>processor
	// FromTime rewinds each partition to its first offset at or after this time (unless UseOffset).
	FromTime time.Time
	// FromOffset rewinds each partition to this offset (clamped to what the topic still holds) when UseOffset.
	FromOffset int64
	UseOffset  bool
	// PartitionsList restricts the rewind to these partitions (comma separated; "" = all).
	PartitionsList string
	// DryRun computes the offsets without committing them.
	DryRun bool
	// KafkaConnOpts are added to the client: TLS, SASL (schemas/kafkaconn).
	KafkaConnOpts []kgo.Opt
}

// ErrGroupActive means the group still has members: replay only rewinds a stopped processor.
var ErrGroupActive = errors.New("processor group has live members; stop every instance first")

// Replay rewinds the processor's consumer group on signals.raw so the next run processes from there again.
// It commits offsets only for partitions where the new offset is lower than the committed one (a replay never
// skips input forward). Replayed events are recognised by their (partition, offset) in the dedup state and
// emitted again one version up; identities offsets are left alone. It returns the offsets set per partition.
func Replay(ctx context.Context, cfg ReplayConfig) (map[int32]int64, error) {
	if len(cfg.Brokers) == 0 {
		cfg.Brokers = []string{"127.0.0.1:9092"}
	}
	if cfg.Group == "" {
		cfg.Group = cfg.Topics.Prefix + "processor"
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(cfg.Brokers...)}, cfg.KafkaConnOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("creating client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	topic := cfg.Topics.Name(schemas.TopicRaw)

	groups, err := adm.DescribeGroups(ctx, cfg.Group)
	if err != nil {
		return nil, fmt.Errorf("describing group %s: %w", cfg.Group, err)
	}
	if g, ok := groups[cfg.Group]; ok && len(g.Members) > 0 {
		return nil, fmt.Errorf("%w (%d members in %s)", ErrGroupActive, len(g.Members), cfg.Group)
	}
	only := map[int32]bool{}
	for _, s := range strings.Split(cfg.PartitionsList, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil {
			return nil, fmt.Errorf("-only-partitions: %q is not a partition", s)
		}
		only[int32(n)] = true
	}

	var target kadm.ListedOffsets
	if cfg.UseOffset {
		target, err = adm.ListStartOffsets(ctx, topic)
	} else {
		target, err = adm.ListOffsetsAfterMilli(ctx, cfg.FromTime.UnixMilli(), topic)
	}
	if err != nil {
		return nil, fmt.Errorf("listing offsets of %s: %w", topic, err)
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("listing end offsets of %s: %w", topic, err)
	}
	committed, err := adm.FetchOffsets(ctx, cfg.Group)
	if err != nil {
		return nil, fmt.Errorf("fetching offsets of %s: %w", cfg.Group, err)
	}
	set := kadm.Offsets{}
	out := map[int32]int64{}
	var lookupErr error
	target.Each(func(lo kadm.ListedOffset) {
		if len(only) > 0 && !only[lo.Partition] {
			return
		}
		if lo.Err != nil {
			lookupErr = lo.Err
			return
		}
		o := lo.Offset
		if cfg.UseOffset {
			o = max(o, cfg.FromOffset) // start offset clamps the requested one
			if e, ok := ends.Lookup(topic, lo.Partition); ok {
				o = min(o, e.Offset)
			}
		}
		if c, ok := committed.Lookup(topic, lo.Partition); ok && c.At >= 0 && c.At <= o {
			return // never move forward
		}
		set.Add(kadm.Offset{Topic: topic, Partition: lo.Partition, At: o, LeaderEpoch: -1})
		out[lo.Partition] = o
	})
	if lookupErr != nil {
		return nil, fmt.Errorf("listing offsets of %s: %w", topic, lookupErr)
	}
	if cfg.DryRun || len(set) == 0 {
		return out, nil
	}
	resp, err := adm.CommitOffsets(ctx, cfg.Group, set)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("committing offsets of %s: %w", cfg.Group, err)
	}
	return out, nil
}
