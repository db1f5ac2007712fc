package rules

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/schemas"
)

// Apply applies one record of the rules topic to state (tenant → record key → rule): a tombstone deletes the
// rule, a record that decodes sets it. It returns the tenant and whether anything changed; a record that does
// not decode, or whose key is not tenant|id, is an error and leaves state as it was. The processor's Watcher and
// Read apply records the same way.
func Apply(state map[string]map[string]Rule, r *kgo.Record) (tenant string, changed bool, err error) {
	key := string(r.Key)
	if r.Value == nil {
		tenant, _, _ := schemas.SplitKey(r.Key) // tenants never contain the separator (Validate)
		_, had := state[tenant][key]
		delete(state[tenant], key)
		if len(state[tenant]) == 0 {
			delete(state, tenant)
		}
		return tenant, had, nil
	}
	var rec schemas.MappingRule
	if err := schemas.MappingRules.Decode(r.Value, &rec); err != nil {
		return "", false, fmt.Errorf("rule record %q at offset %d does not decode: %w", key, r.Offset, err)
	}
	if string(schemas.RoutingKey(rec.Tenant, rec.ID)) != key {
		return "", false, fmt.Errorf("rule record %q at offset %d: key is not tenant|id (%s|%s)", key, r.Offset, rec.Tenant, rec.ID)
	}
	if state[rec.Tenant] == nil {
		state[rec.Tenant] = map[string]Rule{}
	}
	state[rec.Tenant][key] = FromRecord(&rec)
	return rec.Tenant, true, nil
}

// Reached reports whether every partition has been read (pos: the next offset) up to its end offset at start. A
// transactional writer leaves a commit marker as the last offset, which is never delivered as a record: after two
// idle polls, being one short of the end counts as reached.
func Reached(pos, ends map[int32]int64, idle int) bool {
	for p, end := range ends {
		got := pos[p]
		if got >= end || (idle >= 2 && got >= end-1) {
			continue
		}
		return false
	}
	return true
}

// Sort orders rules in matching order: priority descending, then tenant and id ascending.
func Sort(rs []Rule) {
	sort.Slice(rs, func(i, j int) bool {
		if rs[i].Priority != rs[j].Priority {
			return rs[i].Priority > rs[j].Priority
		}
		if rs[i].Tenant != rs[j].Tenant {
			return rs[i].Tenant < rs[j].Tenant
		}
		return rs[i].ID < rs[j].ID
	})
}

// ReadConfig says which rules topic Read reads.
type ReadConfig struct {
	// Brokers to bootstrap from (required).
	Brokers []string
	// Topic is the full name of the rules topic, schemas.Config.Name(schemas.TopicRules) (required).
	Topic string
	// ClientOpts are added to the consumer's options (TLS, SASL, ...).
	ClientOpts []kgo.Opt
}

// Catalog is the valid rules of the rules topic at one moment, by tenant, disabled ones included: what every
// processor has once it has read the topic (records that do not decode and rules that do not validate are left
// out, as the processor skips them).
type Catalog struct {
	byTenant map[string][]Rule
	// Skipped are the records and rules left out.
	Skipped []error
}

// Read reads the whole rules topic once, read committed, up to its end offsets when called.
func Read(ctx context.Context, cfg ReadConfig) (*Catalog, error) {
	if len(cfg.Brokers) == 0 || cfg.Topic == "" {
		return nil, errors.New("reading rules: brokers and topic are required")
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(cfg.Brokers...), kgo.ConsumeTopics(cfg.Topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxWait(500 * time.Millisecond)}, cfg.ClientOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("reading rules: creating client: %w", err)
	}
	defer cl.Close()
	listed, err := kadm.NewClient(cl).ListEndOffsets(ctx, cfg.Topic)
	if err == nil {
		err = listed.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("reading rules: listing end offsets of %s: %w", cfg.Topic, err)
	}
	ends := map[int32]int64{}
	listed.Each(func(o kadm.ListedOffset) { ends[o.Partition] = o.Offset })
	c := &Catalog{byTenant: map[string][]Rule{}}
	state := map[string]map[string]Rule{}
	pos := map[int32]int64{}
	for idle := 0; !Reached(pos, ends, idle); {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		fs := cl.PollFetches(pctx)
		cancel()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("reading rules: %w", ctx.Err())
		}
		n := 0
		fs.EachRecord(func(r *kgo.Record) {
			n++
			pos[r.Partition] = r.Offset + 1
			if _, _, err := Apply(state, r); err != nil {
				c.Skipped = append(c.Skipped, err)
			}
		})
		if n == 0 {
			idle++
		} else {
			idle = 0
		}
	}
	for tenant, rs := range state {
		for _, r := range rs {
			if err := Validate(&r); err != nil {
				c.Skipped = append(c.Skipped, err)
				continue
			}
			c.byTenant[tenant] = append(c.byTenant[tenant], r)
		}
		Sort(c.byTenant[tenant])
	}
	return c, nil
}

// Tenants returns the tenants that have rules, sorted.
func (c *Catalog) Tenants() []string {
	ts := make([]string, 0, len(c.byTenant))
	for t := range c.byTenant {
		ts = append(ts, t)
	}
	sort.Strings(ts)
	return ts
}

// Rules returns a tenant's rules in matching order (a copy).
func (c *Catalog) Rules(tenant string) []Rule { return append([]Rule(nil), c.byTenant[tenant]...) }

// Rule returns one rule.
func (c *Catalog) Rule(tenant, id string) (Rule, bool) {
	for _, r := range c.byTenant[tenant] {
		if r.ID == id {
			return r, true
		}
	}
	return Rule{}, false
}
