package sink

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/schemas"
)

// Replay rewinds the sink's consumer group so the next Run loads again every record of its topics written at or
// after from (the zero time: from the start of what the topics retain). Loading again is safe: the tables are
// ReplacingMergeTree and the queue counts distinct signal ids. The sink must be stopped: Kafka refuses offset
// commits for a group with live members.
func Replay(ctx context.Context, cfg Config, from time.Time) error {
	cfg = cfg.withDefaults()
	if len(cfg.Brokers) == 0 {
		return fmt.Errorf("%w: -brokers: no broker given", ErrConfig)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(cfg.Brokers...))
	if err != nil {
		return fmt.Errorf("creating kafka client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	// signals.erasures too: a reload into an emptied database must apply every erasure again.
	topics := []string{cfg.Topics.Name(schemas.TopicResolved), cfg.Topics.Name(schemas.TopicIdentities),
		cfg.Topics.Name(schemas.TopicDLQ), cfg.Topics.Name(schemas.TopicErasures)}
	var listed kadm.ListedOffsets
	if from.IsZero() {
		listed, err = adm.ListStartOffsets(ctx, topics...)
	} else {
		listed, err = adm.ListOffsetsAfterMilli(ctx, from.UnixMilli(), topics...)
	}
	if err == nil {
		err = listed.Error()
	}
	if err != nil {
		return fmt.Errorf("listing offsets: %w", err)
	}
	resp, err := adm.CommitOffsets(ctx, Group(cfg.Topics.Prefix), listed.Offsets())
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		return fmt.Errorf("rewinding group %s (is a sink still running?): %w", Group(cfg.Topics.Prefix), err)
	}
	return nil
}
