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
	// ReplicationFactor of every topic (default -1: the broker's default.replication.factor).
	ReplicationFactor int16
	// ReplayHorizon is the retention of signals.raw: how far back a replay can go (default 14 days).
	ReplayHorizon time.Duration
	// DLQRetention is the retention of signals.dlq (default 90 days).
	DLQRetention time.Duration
}

func (c Config) withDefaults() Config {
	if c.Partitions <= 0 {
		c.Partitions = 6
	}
	if c.ReplicationFactor == 0 {
		c.ReplicationFactor = -1
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

// EnsureTopics creates the missing topics of specs and checks the partition count of existing ones. It is
// idempotent and safe to call from every stage at start.
func EnsureTopics(ctx context.Context, adm *kadm.Client, replication int16, specs ...TopicSpec) error {
	if replication == 0 {
		replication = -1
	}
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.Name
	}
	existing, err := adm.ListTopics(ctx, names...)
	if err != nil {
		return fmt.Errorf("listing topics: %w", err)
	}
	for _, s := range specs {
		if d, ok := existing[s.Name]; ok && d.Err == nil {
			if int32(len(d.Partitions)) != s.Partitions {
				return fmt.Errorf("%w: %s has %d, want %d", ErrPartitionMismatch, s.Name, len(d.Partitions), s.Partitions)
			}
			continue
		}
		cfg := make(map[string]*string, len(s.Configs))
		for k, v := range s.Configs {
			cfg[k] = kadm.StringPtr(v)
		}
		resp, err := adm.CreateTopic(ctx, s.Partitions, replication, cfg, s.Name)
		if err == nil {
			err = resp.Err
		}
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("creating topic %s: %w", s.Name, err)
		}
	}
	return nil
}

// Ensure creates every topic of the deployment (see EnsureTopics).
func (c Config) Ensure(ctx context.Context, adm *kadm.Client) error {
	c = c.withDefaults()
	return EnsureTopics(ctx, adm, c.ReplicationFactor, c.Specs()...)
}
