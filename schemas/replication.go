package schemas

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"

	"github.com/twmb/franz-go/pkg/kadm"
)

// MaxAutoReplicationFactor is the replication factor chosen when none is set and the cluster has at least that
// many brokers: three copies survive one broker lost while another is being restarted.
const MaxAutoReplicationFactor = 3

// Replication is how the topics a deployment creates are replicated (-replication-factor, -min-insync-replicas
// on every stage). It applies to topics when they are created; an existing topic is never changed, but one below
// it is reported (EnsureResult.Shortfalls).
type Replication struct {
	// Factor is the number of replicas of each partition. 0 (the default) takes min(3, brokers in the cluster's
	// metadata when the topics are created): 1 on a single local broker, 3 on a production cluster. -1 leaves it
	// to the broker's default.replication.factor. Production should set it: a cluster with a broker down while
	// the topics are created would otherwise get fewer replicas than it has brokers.
	Factor int16
	// MinInsync is the min.insync.replicas of each created topic: how many replicas must hold a write before an
	// acks=all producer (ingest, the processor's transactions) is answered. 0 (the default) takes Factor-1, at
	// least 1: with 3 replicas every acknowledged write is on two brokers and writes go on with one broker down;
	// with 2 a write needs only the leader (a second would stop writes whenever one broker restarts). -1 leaves it
	// to the broker's min.insync.replicas (1 unless set). It cannot exceed Factor.
	MinInsync int16
}

// ErrReplication means the replication settings cannot work: min.insync.replicas above the replication factor
// refuses every acks=all write.
var ErrReplication = errors.New("invalid replication settings")

// Validate checks what can be checked without the cluster, naming the flags: each value at least -1, and an
// explicit MinInsync at most an explicit Factor. Stages call it when their config is built.
func (r Replication) Validate() error {
	switch {
	case r.Factor < -1:
		return fmt.Errorf("%w: -replication-factor %d: want at least 1, or 0 for min(3, brokers), or -1 for the broker's default",
			ErrReplication, r.Factor)
	case r.MinInsync < -1:
		return fmt.Errorf("%w: -min-insync-replicas %d: want at least 1, or 0 for the replication factor less one, or -1 for the broker's default",
			ErrReplication, r.MinInsync)
	case r.Factor > 0 && r.MinInsync > r.Factor:
		return fmt.Errorf("%w: -min-insync-replicas %d exceeds -replication-factor %d: every acks=all write would be refused",
			ErrReplication, r.MinInsync, r.Factor)
	}
	return nil
}

// resolve fills the defaults from the cluster: Factor 0 becomes min(3, brokers), MinInsync 0 Factor-1 (at least 1).
func (r Replication) resolve(ctx context.Context, adm *kadm.Client) (Replication, error) {
	if err := r.Validate(); err != nil {
		return r, err
	}
	if r.Factor == 0 {
		md, err := adm.BrokerMetadata(ctx)
		if err != nil {
			return r, fmt.Errorf("reading the cluster's brokers for the replication factor: %w", err)
		}
		r.Factor = int16(min(len(md.Brokers), MaxAutoReplicationFactor))
		if r.Factor < 1 {
			return r, fmt.Errorf("%w: the cluster's metadata lists no broker", ErrReplication)
		}
	}
	if r.MinInsync == 0 {
		r.MinInsync = -1
		if r.Factor > 0 {
			r.MinInsync = max(1, r.Factor-1)
		}
	}
	if r.Factor > 0 && r.MinInsync > r.Factor {
		return r, fmt.Errorf("%w: -min-insync-replicas %d exceeds the replication factor %d (min(3, brokers)): every acks=all write would be refused",
			ErrReplication, r.MinInsync, r.Factor)
	}
	return r, nil
}

// Shortfall is an existing topic replicated below the deployment's settings: fewer replicas on one of its
// partitions than Factor, or a lower min.insync.replicas (a write acknowledged with fewer copies than asked).
// EnsureTopics does not change it (reassigning replicas moves data: an operator's decision, see README "Running
// at scale"); the stages log it at start.
type Shortfall struct {
	Topic string
	// Factor is the fewest replicas of its partitions; WantFactor the deployment's (0: not checked, -1 given).
	Factor, WantFactor int16
	// MinInsync is its min.insync.replicas (0: not read); WantMinInsync the deployment's.
	MinInsync, WantMinInsync int16
}

func (s Shortfall) String() string {
	return fmt.Sprintf("%s: replication factor %d (want %d), min.insync.replicas %d (want %d)",
		s.Topic, s.Factor, s.WantFactor, s.MinInsync, s.WantMinInsync)
}

// EnsureResult is what EnsureTopics did: the replication it resolved, the topics it created, and the existing
// topics replicated below it.
type EnsureResult struct {
	Replication Replication
	Created     []string
	Shortfalls  []Shortfall
}

// Log writes the result at start: created topics at info, each shortfall at warn (a 200 from ingest then means
// fewer copies than the deployment asks for).
func (r EnsureResult) Log(log *slog.Logger) {
	if len(r.Created) > 0 {
		log.Info("created topics", "topics", r.Created, "replication_factor", r.Replication.Factor,
			"min_insync_replicas", r.Replication.MinInsync)
	}
	for _, s := range r.Shortfalls {
		log.Warn("topic replicated below the deployment's settings; reassign its replicas or raise min.insync.replicas (README, Running at scale)",
			"topic", s.Topic, "replication_factor", s.Factor, "want_replication_factor", s.WantFactor,
			"min_insync_replicas", s.MinInsync, "want_min_insync_replicas", s.WantMinInsync)
	}
}

// shortfalls compares the existing topics with rep.
func shortfalls(ctx context.Context, adm *kadm.Client, rep Replication, existing kadm.TopicDetails) ([]Shortfall, error) {
	if len(existing) == 0 || (rep.Factor < 1 && rep.MinInsync < 1) {
		return nil, nil
	}
	names := existing.Names()
	isr := map[string]int16{}
	if rep.MinInsync > 0 {
		rcs, err := adm.DescribeTopicConfigs(ctx, names...)
		if err != nil {
			return nil, fmt.Errorf("describing the configs of %v: %w", names, err)
		}
		for _, rc := range rcs {
			if rc.Err != nil {
				return nil, fmt.Errorf("describing the config of %s: %w", rc.Name, rc.Err)
			}
			for _, c := range rc.Configs {
				if c.Key == "min.insync.replicas" && c.Value != nil {
					n, err := strconv.ParseInt(*c.Value, 10, 16)
					if err != nil {
						return nil, fmt.Errorf("%s: min.insync.replicas %q: %w", rc.Name, *c.Value, err)
					}
					isr[rc.Name] = int16(n)
				}
			}
		}
	}
	var out []Shortfall
	for _, name := range names {
		d := existing[name]
		rf := int16(-1)
		for _, p := range d.Partitions {
			if n := int16(len(p.Replicas)); rf < 0 || n < rf {
				rf = n
			}
		}
		s := Shortfall{Topic: name, Factor: rf, WantFactor: rep.Factor, MinInsync: isr[name], WantMinInsync: rep.MinInsync}
		_, read := isr[name] // a broker that does not report it is not second-guessed
		if (rep.Factor > 0 && rf < rep.Factor) || (rep.MinInsync > 0 && read && s.MinInsync < rep.MinInsync) {
			out = append(out, s)
		}
	}
	return out, nil
}
