package sink

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/schemas/kafkaconn"
)

// TailRequest is what `sink tail` prints.
type TailRequest struct {
	// Topic is a topic's base name (signals.resolved), or its full name with the deployment prefix.
	Topic string
	// FromBeginning starts at the oldest record the topic keeps; otherwise only records written from now on.
	FromBeginning bool
	// N stops after this many records (0: until ctx is done).
	N int
}

// TailLine is one printed record: where it is, its key and headers, and its value decoded by schemas.ViewRecord
// whatever schema version wrote it (null for a tombstone). A value that does not decode keeps its error in Error
// and is printed anyway, so a bad record does not stop an operator reading past it.
type TailLine struct {
	Topic     string            `json:"topic"`
	Partition int32             `json:"partition"`
	Offset    int64             `json:"offset"`
	Timestamp time.Time         `json:"timestamp"`
	Key       string            `json:"key"`
	Headers   map[string]string `json:"headers,omitempty"`
	Value     any               `json:"value"`
	Error     string            `json:"error,omitempty"`
}

// Tail prints the records of one signalstage topic to out as JSON lines (TailLine), read committed, without a
// consumer group (it moves no offsets). It returns nil at N records or when ctx is done.
func Tail(ctx context.Context, cfg Config, req TailRequest, out io.Writer) error {
	cfg = cfg.withDefaults()
	base := strings.TrimPrefix(req.Topic, cfg.Topics.Prefix)
	if _, err := schemas.ViewRecord(base, nil); err != nil {
		return fmt.Errorf("%w: -topic: %w", ErrConfig, err)
	}
	if req.N < 0 {
		return fmt.Errorf("%w: -n: %d is negative", ErrConfig, req.N)
	}
	topic := cfg.Topics.Name(base)
	start := kgo.NewOffset().AtEnd()
	if req.FromBeginning {
		start = kgo.NewOffset().AtStart()
	}
	cl, err := kgo.NewClient(cfg.kafkaOpts(kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(start),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))...)
	if err != nil {
		return fmt.Errorf("creating kafka client: %w", err)
	}
	defer cl.Close()
	topics, err := kadm.NewClient(cl).ListTopics(ctx, topic)
	if err != nil {
		return fmt.Errorf("listing %s: %w", topic, kafkaconn.Explain(err))
	}
	if !topics.Has(topic) {
		return fmt.Errorf("%w: -topic: %s does not exist", ErrConfig, topic)
	}
	var reg *schemas.Registry
	if cfg.SchemaRegistry != "" {
		if reg, err = openRegistry(ctx, cfg.SchemaRegistry); err != nil {
			return err
		}
	}
	enc := json.NewEncoder(out)
	printed := 0
	for req.N == 0 || printed < req.N {
		most := 0 // no bound
		if req.N > 0 {
			most = req.N - printed
		}
		fs := cl.PollRecords(ctx, most)
		if ctx.Err() != nil {
			return nil
		}
		for _, e := range fs.Errors() {
			return fmt.Errorf("reading %s/%d: %w", e.Topic, e.Partition, kafkaconn.Explain(e.Err))
		}
		for _, r := range fs.Records() {
			line := TailLine{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp.UTC(), Key: string(r.Key)}
			for _, h := range r.Headers {
				if line.Headers == nil {
					line.Headers = map[string]string{}
				}
				line.Headers[h.Key] = string(h.Value)
			}
			if line.Value, err = schemas.ViewRecordWith(reg, base, r.Value); err != nil {
				line.Error = err.Error()
			}
			if err := enc.Encode(line); err != nil {
				return fmt.Errorf("writing: %w", err)
			}
			printed++
		}
	}
	return nil
}
