package processor

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/testenv"
)

// settleStall is how long signals.resolved may go without a new committed signal before settle gives up: a
// restore waiting for a stable changelog can take the transaction timeout plus the broker's abort scan (60 s in
// TestKillThenRebalanceInsideTransactionTimeout) before anything comes out.
const settleStall = 90 * time.Second

// countSignalsProgress counts the committed signals of signals.resolved from the start until it has want of
// them, or none came for stall: on a loaded machine the count keeps growing, only slower, and that is waited
// for; a count that stops growing is what fails.
func countSignalsProgress(t testing.TB, k *testenv.Kafka, want int, stall time.Duration) (n int, stalled time.Duration) {
	t.Helper()
	cl := k.Client(kgo.ConsumeTopics(k.Topic(schemas.TopicResolved)), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	last := time.Now()
	for n < want && time.Since(last) < stall {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		fs := cl.PollFetches(ctx)
		cancel()
		fs.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("fetching %s/%d: %v", topic, p, err)
			}
		})
		if got := fs.NumRecords(); got > 0 {
			n += got
			last = time.Now()
		}
	}
	return n, time.Since(last)
}

// inputReport says, per partition of signals.raw, where the processor group's committed offset is against the
// partition's high watermark and which member of the group owns it, so a short read tells late records (lag on
// owned partitions) from stuck ones (lag on a partition nobody owns, or that did not move between two reports).
func inputReport(t testing.TB, k *testenv.Kafka, group string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	raw := k.Topic(schemas.TopicRaw)
	ends, err := k.Admin.ListEndOffsets(ctx, raw)
	if err != nil {
		return fmt.Sprintf("listing %s end offsets: %v", raw, err)
	}
	committed, err := k.Admin.FetchOffsets(ctx, group)
	if err != nil {
		return fmt.Sprintf("fetching %s's offsets: %v", group, err)
	}
	owner := map[int32]string{}
	state := "?"
	if groups, err := k.Admin.DescribeGroups(ctx, group); err == nil {
		g := groups[group]
		state = g.State
		for _, m := range g.Members {
			name := m.ClientID
			if m.InstanceID != nil {
				name = *m.InstanceID
			}
			name += "/" + m.MemberID[max(0, len(m.MemberID)-6):]
			if c, ok := m.Assigned.AsConsumer(); ok {
				for _, tp := range c.Topics {
					if tp.Topic == raw {
						for _, p := range tp.Partitions {
							owner[p] = name
						}
					}
				}
			}
		}
	}
	var parts []string
	ends.Each(func(o kadm.ListedOffset) {
		at := int64(-1)
		if c, ok := committed.Lookup(raw, o.Partition); ok {
			at = c.At
		}
		who := owner[o.Partition]
		if who == "" {
			who = "NOBODY"
		}
		parts = append(parts, fmt.Sprintf("p%d committed %d / end %d (lag %d, owner %s)", o.Partition, at, o.Offset,
			o.Offset-max(at, 0), who))
	})
	sort.Strings(parts)
	return fmt.Sprintf("group %s (%s): %s", group, state, strings.Join(parts, "; "))
}
