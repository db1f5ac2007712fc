package schemas

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// Topic names without the deployment prefix; Topics.Name adds it.
const (
	TopicRaw        = "signals.raw"
	TopicResolved   = "signals.resolved"
	TopicIdentities = "identities"
	TopicDLQ        = "signals.dlq"
	TopicRules      = "signals.rules"
)

// TopicSpec is one row of the topic table: what EnsureTopics creates.
type TopicSpec struct {
	Name       string // without prefix
	Partitions int32
	// Configs are Kafka topic configs (cleanup.policy, retention.ms, ...).
	Configs map[string]string
}

// Config of the topic set of one deployment.
type Config struct {
	// Prefix is prepended to every topic name ("" by default; tests use a unique one each).
	Prefix string
	// Partitions of signals.raw and of everything co-partitioned with it (default 6). Co-partitioning needs
	// the same count on signals.raw, signals.resolved, identities and the processor changelogs: never change it
	// on a live deployment without a migration.
	Partitions int32
	// Replication of every topic when created (default: min(3, brokers) replicas, min.insync.replicas one less,
	// at least 1; see Replication).
	Replication Replication
	// ReplayHorizon is the retention of signals.raw: how far back a replay can go (default 14 days).
	ReplayHorizon time.Duration
	// DLQRetention is the retention of signals.dlq (default 90 days).
	DLQRetention time.Duration
}

func (c Config) withDefaults() Config {
	if c.Partitions <= 0 {
		c.Partitions = 6
	}
	if c.ReplayHorizon <= 0 {
		c.ReplayHorizon = 14 * 24 * time.Hour
	}
	if c.DLQRetention <= 0 {
		c.DLQRetention = 90 * 24 * time.Hour
	}
	return c
}

// Name returns the full name of topic base under the prefix.
func (c Config) Name(base string) string { return c.Prefix + base }

func ms(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }

// Specs returns the topic table, with full names.
func (c Config) Specs() []TopicSpec {
	c = c.withDefaults()
	return []TopicSpec{
		{c.Name(TopicRaw), c.Partitions, map[string]string{"cleanup.policy": "delete", "retention.ms": ms(c.ReplayHorizon)}},
		{c.Name(TopicResolved), c.Partitions, map[string]string{"cleanup.policy": "delete", "retention.ms": ms(c.ReplayHorizon)}},
		{c.Name(TopicIdentities), c.Partitions, map[string]string{"cleanup.policy": "compact"}},
		{c.Name(TopicDLQ), c.Partitions, map[string]string{"cleanup.policy": "delete", "retention.ms": ms(c.DLQRetention)}},
		{c.Name(TopicRules), 1, map[string]string{"cleanup.policy": "compact"}},
		{c.Name(TopicErasures), 1, map[string]string{"cleanup.policy": "compact"}},
	}
}

// ErrPartitionMismatch means an existing topic has another partition count than the table asks for, which would
// break co-partitioning. EnsureTopics never changes partition counts itself.
var ErrPartitionMismatch = errors.New("topic exists with a different partition count")

// EnsureTopics creates the missing topics of specs, replicated as rep says (its defaults resolved from the
// cluster's metadata), and checks the existing ones: a partition count other than the spec's is an error
// (ErrPartitionMismatch), a replication below rep is reported in the result's Shortfalls. It is idempotent and
// safe to call from every stage at start.
func EnsureTopics(ctx context.Context, adm *kadm.Client, rep Replication, specs ...TopicSpec) (EnsureResult, error) {
	rep, err := rep.resolve(ctx, adm)
	res := EnsureResult{Replication: rep}
	if err != nil {
		return res, err
	}
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.Name
	}
	listed, err := adm.ListTopics(ctx, names...)
	if err != nil {
		return res, fmt.Errorf("listing topics: %w", err)
	}
	existing := kadm.TopicDetails{}
	var raced []TopicSpec
	for _, s := range specs {
		if d, ok := listed[s.Name]; ok && d.Err == nil {
			if int32(len(d.Partitions)) != s.Partitions {
				return res, fmt.Errorf("%w: %s has %d, want %d", ErrPartitionMismatch, s.Name, len(d.Partitions), s.Partitions)
			}
			existing[s.Name] = d
			continue
		}
		cfg := make(map[string]*string, len(s.Configs)+1)
		for k, v := range s.Configs {
			cfg[k] = kadm.StringPtr(v)
		}
		if rep.MinInsync > 0 {
			cfg["min.insync.replicas"] = kadm.StringPtr(strconv.Itoa(int(rep.MinInsync)))
		}
		resp, err := adm.CreateTopic(ctx, s.Partitions, rep.Factor, cfg, s.Name)
		if err == nil {
			err = resp.Err
		}
		switch {
		case err == nil:
			res.Created = append(res.Created, s.Name)
		case errors.Is(err, kerr.TopicAlreadyExists):
			// Not listed but there: made meanwhile, or listed from the client's metadata cache. Checked below.
			raced = append(raced, s)
		default:
			return res, fmt.Errorf("creating topic %s (replication factor %d): %w", s.Name, rep.Factor, err)
		}
	}
	if err := listRaced(ctx, adm, raced, existing); err != nil {
		return res, err
	}
	if res.Shortfalls, err = shortfalls(ctx, adm, rep, existing); err != nil {
		return res, err
	}
	return res, nil
}

// listRaced lists the topics that existed though the first listing missed them, until the metadata shows them
// (the client caches metadata for a few seconds), checks their partition count and adds them to existing.
func listRaced(ctx context.Context, adm *kadm.Client, raced []TopicSpec, existing kadm.TopicDetails) error {
	for _, s := range raced {
		for {
			td, err := adm.ListTopics(ctx, s.Name)
			if d, ok := td[s.Name]; err == nil && ok && d.Err == nil {
				if int32(len(d.Partitions)) != s.Partitions {
					return fmt.Errorf("%w: %s has %d, want %d", ErrPartitionMismatch, s.Name, len(d.Partitions), s.Partitions)
				}
				existing[s.Name] = d
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("listing %s, which exists: %w", s.Name, ctx.Err())
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

// Ensure creates every topic of the deployment (see EnsureTopics).
func (c Config) Ensure(ctx context.Context, adm *kadm.Client) (EnsureResult, error) {
	c = c.withDefaults()
	return EnsureTopics(ctx, adm, c.Replication, c.Specs()...)
}
