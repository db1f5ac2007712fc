package sink

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// Ready returns nil when the sink is doing its job: migrations applied and Run loading, a member of its group,
// a broker and ClickHouse answering; otherwise what is missing. It is what the sink's /readyz reports.
func (s *Sink) Ready(ctx context.Context) error {
	if !s.running.Load() {
		return errors.New("not running yet (migrating, or stopped)")
	}
	if member, gen := s.client.GroupMetadata(); member == "" || gen < 0 {
		return errors.New("not a member of the consumer group yet")
	}
	if err := s.client.Ping(ctx); err != nil {
		return fmt.Errorf("kafka: %w", err)
	}
	if err := s.conn.Ping(ctx); err != nil {
		return fmt.Errorf("clickhouse: %w", err)
	}
	return nil
}

// WatchLag sets signalstage_sink_partition_lag_records every interval until ctx ends: per topic and partition,
// the last stable offset minus the group's committed offset (what the group as a whole has yet to load; every
// member reports the same).
func (s *Sink) WatchLag(ctx context.Context, interval time.Duration) {
	adm := kadm.NewClient(s.client)
	names := make([]string, 0, len(s.topics))
	for full := range s.topics {
		names = append(names, full)
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := s.measureLag(ctx, adm, names, interval); err != nil && ctx.Err() == nil {
			s.log.Debug("measuring lag", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Sink) measureLag(ctx context.Context, adm *kadm.Client, names []string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ends, err := adm.ListCommittedOffsets(ctx, names...)
	if err != nil {
		return err
	}
	committed, err := adm.FetchOffsets(ctx, Group(s.cfg.Topics.Prefix))
	if err != nil {
		return err
	}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			return
		}
		at := int64(0)
		if c, ok := committed.Lookup(o.Topic, o.Partition); ok && c.At >= 0 {
			at = c.At
		}
		s.m.partitionLag.WithLabelValues(s.topics[o.Topic], strconv.Itoa(int(o.Partition))).Set(float64(max(0, o.Offset-at)))
	})
	return nil
}
