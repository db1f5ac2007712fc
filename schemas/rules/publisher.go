package rules

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/schemas"
)

// Publisher writes rule changes to the rules topic: a rule keyed tenant|id, or a tombstone to delete it.
// Compaction keeps the newest record per key, so the topic is the rule store.
type Publisher struct {
	cl    *kgo.Client
	topic string
	now   func() time.Time
}

// NewPublisher returns a Publisher producing to topic (the full name of the rules topic) with cl. cl must not
// be a transactional client; it can be shared.
func NewPublisher(cl *kgo.Client, topic string) *Publisher {
	return &Publisher{cl: cl, topic: topic, now: time.Now}
}

// Apply validates rules together (duplicates included) and writes them; nothing is written if one is invalid.
// It returns when the broker has acknowledged every record. UpdatedAt is set to now.
func (p *Publisher) Apply(ctx context.Context, rs ...Rule) error {
	if err := ValidateAll(rs); err != nil {
		return err
	}
	recs := make([]*kgo.Record, len(rs))
	now := p.now().UTC().Truncate(time.Millisecond)
	for i := range rs {
		r := rs[i]
		if r.Match.Source == "any" {
			r.Match.Source = ""
		}
		r.UpdatedAt = now
		v, err := schemas.MappingRules.Encode(r.Record())
		if err != nil {
			return fmt.Errorf("encoding rule %s/%s: %w", r.Tenant, r.ID, err)
		}
		recs[i] = &kgo.Record{Topic: p.topic, Key: r.Key(), Value: v}
	}
	if err := p.cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("producing rules: %w", err)
	}
	return nil
}

// Delete writes a tombstone for tenant's rule id. Deleting a rule that does not exist is not an error.
func (p *Publisher) Delete(ctx context.Context, tenant, id string) error {
	rec := &kgo.Record{Topic: p.topic, Key: schemas.RoutingKey(tenant, id)}
	if err := p.cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		return fmt.Errorf("deleting rule %s/%s: %w", tenant, id, err)
	}
	return nil
}
