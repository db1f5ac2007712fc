package sink

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/schemas"
)

// ForgetRequest names the person `sink forget` erases: a tenant and at least one of a lead email, an anonymous
// id and a user id.
type ForgetRequest struct {
	Tenant, Email, AnonymousID, UserID string
	// Wait is how long Forget waits for a running sink to report the erasure (0: publish and return).
	Wait time.Duration
}

// ErrNotErased means the erasure was published but no sink reported it within ForgetRequest.Wait: it is applied
// when a sink reads it (the record stays on the compacted topic).
var ErrNotErased = fmt.Errorf("erasure published, not reported yet")

// Forget publishes an erasure of the person to signals.erasures (creating that topic if needed) and, with a Wait,
// waits until a sink has applied it and returns what it removed (erasure_log). The request id is returned either
// way.
func Forget(ctx context.Context, cfg Config, req ForgetRequest) (string, *ErasureReport, error) {
	cfg = cfg.withDefaults()
	if req.Tenant == "" || (req.Email == "" && req.AnonymousID == "" && req.UserID == "") {
		return "", nil, fmt.Errorf("%w: forget needs -tenant and one of -email, -anonymous-id, -user-id", ErrConfig)
	}
	var id [8]byte
	if _, err := rand.Read(id[:]); err != nil {
		return "", nil, err
	}
	e := schemas.Erasure{Tenant: req.Tenant, RequestID: hex.EncodeToString(id[:]), Email: strings.ToLower(req.Email),
		AnonymousID: req.AnonymousID, UserID: req.UserID, RequestedAt: time.Now().UTC().Truncate(time.Millisecond)}
	// Only the erasures topic: a forget must not depend on (or create) the rest of the deployment's topics.
	topic := cfg.Topics.Name(schemas.TopicErasures)
	// In registry mode the erasure is framed like every other record the stages write (nil: single-object).
	var reg *schemas.Registry
	if cfg.SchemaRegistry != "" {
		var err error
		if reg, err = openRegistry(ctx, cfg.SchemaRegistry); err != nil {
			return "", nil, err
		}
		if err := reg.Register(ctx, topic, schemas.Erasures); err != nil {
			return "", nil, fmt.Errorf("-schema-registry: %w", err)
		}
	}
	value, err := schemas.Erasures.EncodeWith(reg, &e)
	if err != nil {
		return "", nil, fmt.Errorf("encoding the erasure: %w", err)
	}
	cl, err := kgo.NewClient(cfg.kafkaOpts()...)
	if err != nil {
		return "", nil, fmt.Errorf("creating kafka client: %w", err)
	}
	defer cl.Close()
	for _, spec := range cfg.Topics.Specs() {
		if spec.Name == topic {
			if _, err := schemas.EnsureTopics(ctx, kadm.NewClient(cl), cfg.Topics.Replication, spec); err != nil {
				return "", nil, fmt.Errorf("ensuring %s: %w", topic, err)
			}
		}
	}
	rec := &kgo.Record{Topic: topic, Key: schemas.ErasureKey(&e), Value: value}
	if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		return "", nil, fmt.Errorf("publishing the erasure: %w", err)
	}
	if req.Wait <= 0 {
		return e.RequestID, nil, nil
	}
	conn, err := OpenClickHouse(cfg)
	if err != nil {
		return e.RequestID, nil, err
	}
	defer conn.Close()
	wctx, cancel := context.WithTimeout(ctx, req.Wait)
	defer cancel()
	for {
		reports, err := ErasureReports(wctx, conn, cfg.Database, e.RequestID)
		if err == nil && len(reports) > 0 {
			return e.RequestID, &reports[0], nil
		}
		select {
		case <-wctx.Done():
			return e.RequestID, nil, fmt.Errorf("%w after %s: request %s (is a sink running?)", ErrNotErased, req.Wait, e.RequestID)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
