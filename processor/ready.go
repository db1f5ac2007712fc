package processor

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// lagInterval is how often the consumer lag is measured, which also checks that a broker answers.
const lagInterval = 5 * time.Second

// readiness is what /readyz reports.
type readiness struct {
	Ready bool `json:"ready"`
	// Session: a group transact session is running (false between two after a Kafka failure).
	Session bool `json:"session"`
	// Joined: the group has given this session its partitions (possibly none).
	Joined bool `json:"joined"`
	// Restored: every assigned partition's state has caught up with the changelog.
	Restored bool `json:"restored"`
	// Broker: the last lag measurement, a few seconds ago at most, got answers.
	Broker     bool    `json:"broker"`
	Partitions []int32 `json:"partitions"`
}

func (p *Processor) readiness() readiness {
	p.ownMu.Lock()
	r := readiness{Joined: p.joined, Restored: p.restored, Broker: p.brokerOK.Load(), Partitions: []int32{}}
	for part := range p.assigned {
		r.Partitions = append(r.Partitions, part)
	}
	p.ownMu.Unlock()
	r.Session = p.inSession.Load()
	r.Ready = r.Session && r.Joined && r.Restored && r.Broker
	return r
}

// serveReady is /readyz: 200 once the instance has joined the group, restored every partition it was assigned
// and reaches a broker; 503 otherwise (joining, restoring, a broker outage), with the parts as JSON.
func (p *Processor) serveReady(w http.ResponseWriter, _ *http.Request) {
	r := p.readiness()
	w.Header().Set("Content-Type", "application/json")
	if !r.Ready {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(r)
}

// watchBroker measures, every lagInterval until ctx ends, the consumer lag of the partitions this instance
// owns (signalstage_processor_consumer_lag_records: last stable offset minus the group's committed offset) and
// records whether a broker answered (for /readyz).
func (p *Processor) watchBroker(ctx context.Context) {
	adm, cl, err := p.admin()
	if err != nil {
		p.log.Warn("no lag measurement", "err", err)
		return
	}
	defer cl.Close()
	topics := []string{p.raw, p.idents, p.aliases}
	t := time.NewTicker(lagInterval)
	defer t.Stop()
	for {
		p.brokerOK.Store(p.measureLag(ctx, adm, topics) == nil)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (p *Processor) measureLag(ctx context.Context, adm *kadm.Client, topics []string) error {
	ctx, cancel := context.WithTimeout(ctx, lagInterval)
	defer cancel()
	ends, err := adm.ListCommittedOffsets(ctx, topics...)
	if err != nil {
		return err
	}
	if err := ends.Error(); err != nil {
		return err
	}
	committed, err := adm.FetchOffsets(ctx, p.cfg.Group)
	if err != nil {
		return err
	}
	p.ownMu.Lock()
	mine := make(map[int32]bool, len(p.assigned))
	for part := range p.assigned {
		mine[part] = true
	}
	p.ownMu.Unlock()
	p.m.lag.Reset()
	ends.Each(func(o kadm.ListedOffset) {
		if !mine[o.Partition] {
			return
		}
		at := int64(0)
		if c, ok := committed.Lookup(o.Topic, o.Partition); ok && c.At >= 0 {
			at = c.At
		}
		p.m.lag.WithLabelValues(strings.TrimPrefix(o.Topic, p.cfg.Topics.Prefix), strconv.Itoa(int(o.Partition))).Set(float64(max(0, o.Offset-at)))
	})
	return nil
}
