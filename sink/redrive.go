package sink

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/schemas/progress"
)

// RedriveConfig selects the dead letters Redrive sends back.
type RedriveConfig struct {
	// Where is a ClickHouse boolean expression over the columns of dead_letters (flag -where; default
	// "retries = 0": those not redriven yet). It is the operator's own SQL, spliced into the query.
	Where string
	// Limit bounds how many dead letters one run selects (flag -limit; default 10,000).
	Limit int
	// DryRun lists what would be sent and sends nothing.
	DryRun bool
	// Progress, when set, reports done of the dead letters selected (counted first), the rate and the ETA
	// (schemas/progress).
	Progress *progress.Options
}

// Redriven is one selected dead letter and what Redrive did with it.
type Redriven struct {
	Stage, Reason, OriginTopic string
	OriginPartition            int32
	OriginOffset               int64
	Retries                    int32 // before this run
	// Skipped says why it was not sent ("" when it was, or would be in a dry run).
	Skipped string
}

// redriveChunk is how many dead letters Redrive sends and marks at a time.
const redriveChunk = 500

// RedriveResult counts what Redrive did.
type RedriveResult struct {
	Sent    int            // produced again to their origin topic (in a dry run: would be)
	Skipped map[string]int // not redrivable, by reason
}

// Redrive sends dead letters back where they came from, once whatever made them fail is fixed: each row of
// dead_letters (FINAL) that matches rc and came from a topic a stage consumes (signals.raw, identities,
// signals.resolved) is produced again to that topic and partition with its key and payload, which the stage that
// dead-lettered it kept as they were (the processor and the sink keep the record's own bytes), and then marked:
// the row is written again with retries + 1, so the default selection does not pick it twice. Events ingest
// refused have no origin topic (they never reached Kafka) and are skipped: the sender has to send them again.
//
// Sending twice is harmless downstream: the processor drops an event it already processed as a duplicate (within
// the dedup window) and the sink's tables are ReplacingMergeTree. A record that fails again becomes a new dead
// letter. each, when not nil, sees every selected dead letter in order.
func Redrive(ctx context.Context, cfg Config, rc RedriveConfig, each func(Redriven)) (RedriveResult, error) {
	res := RedriveResult{Skipped: map[string]int{}}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return res, err
	}
	if rc.Where == "" {
		rc.Where = "retries = 0"
	}
	if rc.Limit <= 0 {
		rc.Limit = 10_000
	}
	conn, err := OpenClickHouse(cfg)
	if err != nil {
		return res, err
	}
	defer conn.Close()
	rows, err := conn.Query(ctx, fmt.Sprintf("SELECT %s FROM %s.dead_letters_v2 FINAL WHERE (%s) "+
		"ORDER BY failed_at, kafka_topic, kafka_partition, kafka_offset LIMIT %d",
		strings.Join(columnsOf[deadLetterRow](), ", "), cfg.Database, rc.Where, rc.Limit))
	if err != nil {
		return res, fmt.Errorf("selecting dead letters (-where %q): %w", rc.Where, err)
	}
	defer rows.Close()
	var meter *progress.Meter
	if rc.Progress != nil {
		var total uint64
		if err := conn.QueryRow(ctx, fmt.Sprintf("SELECT count() FROM (SELECT 1 FROM %s.dead_letters_v2 FINAL WHERE (%s) LIMIT %d)",
			cfg.Database, rc.Where, rc.Limit)).Scan(&total); err != nil {
			return res, fmt.Errorf("counting dead letters (-where %q): %w", rc.Where, err)
		}
		meter = progress.Start("redrive", int64(total), *rc.Progress)
		defer meter.Stop()
	}

	redrivable := map[string]bool{}
	for _, base := range []string{schemas.TopicRaw, schemas.TopicIdentities, schemas.TopicResolved} {
		redrivable[cfg.Topics.Name(base)] = true
	}
	// Sent and marked a chunk at a time, so memory stays bounded by the chunk (payloads can be large).
	var (
		cl     *kgo.Client
		send   []*kgo.Record
		marked []deadLetterRow
	)
	defer func() {
		if cl != nil {
			cl.Close()
		}
	}()
	flush := func() error {
		if len(send) == 0 {
			return nil
		}
		if cl == nil {
			// The origin partition, not a partitioner's choice: the co-partitioned topics must keep each key
			// where it was.
			if cl, err = kgo.NewClient(cfg.kafkaOpts(kgo.RecordPartitioner(kgo.ManualPartitioner()))...); err != nil {
				return fmt.Errorf("creating kafka client: %w", err)
			}
		}
		if err := cl.ProduceSync(ctx, send...).FirstErr(); err != nil {
			return fmt.Errorf("producing dead letters again (some may have been sent; sending twice is harmless): %w", err)
		}
		marks := newDeadLettersTable(cfg.Database)
		marks.rows = marked
		for _, b := range marks.split(cfg.MaxPartitionsPerInsert) {
			if err := b.insert(ctx, conn); err != nil {
				return fmt.Errorf("marking dead letters redriven (they were sent): %w", err)
			}
		}
		res.Sent += len(send)
		meter.Add(int64(len(send)))
		send, marked = send[:0], marked[:0]
		return nil
	}
	for rows.Next() {
		var d deadLetterRow
		if err := rows.ScanStruct(&d); err != nil {
			return res, fmt.Errorf("reading dead letters: %w", err)
		}
		r := Redriven{Stage: d.Stage, Reason: d.Reason, OriginTopic: d.OriginTopic, OriginPartition: d.OriginPartition,
			OriginOffset: d.OriginOffset, Retries: int32(d.Retries)}
		switch {
		case d.OriginTopic == "":
			r.Skipped = "no origin topic (refused at the edge: the sender must send it again)"
		case !redrivable[d.OriginTopic]:
			r.Skipped = "origin topic is not an input of a stage"
		case d.OriginPartition < 0:
			r.Skipped = "no origin partition"
		}
		if each != nil {
			each(r)
		}
		switch {
		case r.Skipped != "":
			res.Skipped[r.Skipped]++
			meter.Add(1)
		case rc.DryRun:
			res.Sent++
			meter.Add(1)
		default:
			rec := &kgo.Record{Topic: d.OriginTopic, Partition: d.OriginPartition, Value: []byte(d.Payload),
				Headers: []kgo.RecordHeader{{Key: schemas.RedriveHeader, Value: []byte(strconv.Itoa(int(d.Retries) + 1))}}}
			if d.Key != "" {
				rec.Key = []byte(d.Key)
			}
			send = append(send, rec)
			d.Retries++
			marked = append(marked, d)
			if len(send) == redriveChunk {
				if err := flush(); err != nil {
					return res, err
				}
			}
		}
	}
	if err := rows.Err(); err != nil {
		return res, fmt.Errorf("reading dead letters: %w", err)
	}
	if err := flush(); err != nil {
		return res, err
	}
	return res, nil
}
