package processor

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/schemas/progress"
)

// followPoll is how often FollowReplay reads the group's committed offsets.
const followPoll = time.Second

// FollowReplay reports how far the processor's group has got through what Replay rewound: from the offsets
// Replay set (from, per partition of signals.raw) to the partitions' end offsets when it is called, done being
// the offsets the group has committed past from. It returns once the group's committed offsets reached every
// end, or when ctx ends (the operator stopped following; the processors go on). Start the processors after
// Replay, before or after calling this.
func FollowReplay(ctx context.Context, cfg ReplayConfig, from map[int32]int64, opt progress.Options) error {
	if cfg.Group == "" {
		cfg.Group = cfg.Topics.Prefix + "processor"
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(cfg.Brokers...)}, cfg.KafkaConnOpts...)...)
	if err != nil {
		return fmt.Errorf("creating client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	topic := cfg.Topics.Name(schemas.TopicRaw)
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return fmt.Errorf("listing end offsets of %s: %w", topic, err)
	}
	until := map[int32]int64{}
	var total int64
	for part, o := range from {
		if e, ok := ends.Lookup(topic, part); ok && e.Err == nil && e.Offset > o {
			until[part] = e.Offset
			total += e.Offset - o
		}
	}
	m := progress.Start("replay", total, opt)
	defer m.Discard()
	t := time.NewTicker(followPoll)
	defer t.Stop()
	for {
		committed, err := adm.FetchOffsets(ctx, cfg.Group)
		if err != nil && ctx.Err() == nil {
			return fmt.Errorf("fetching offsets of %s: %w", cfg.Group, err)
		}
		var done int64
		for part, end := range until {
			if c, ok := committed.Lookup(topic, part); ok && c.At > from[part] {
				done += min(c.At, end) - from[part]
			}
		}
		m.Set(done)
		if done >= total {
			m.Stop()
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
