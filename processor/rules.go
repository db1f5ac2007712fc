package processor

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/processor/rules"
	"github.com/signalstage/signalstage/schemas"
)

// RuleEvent is the rules engine's view of a processor event: its contract fields, and the event itself as the field
// reader, which asks the contract (contract.Lookup) for the dot paths a rule needs, only when it needs them.
func RuleEvent(e *Event) rules.Event {
	return rules.Event{Source: e.Source, Type: e.Type, Name: e.Name(), URL: e.URL, Fields: e}
}

// newRulesWatcher builds the watcher of the rules topic and the Mapper on top of it.
func newRulesWatcher(cfg Config) (*rules.Watcher, Mapper, error) {
	w, err := rules.NewWatcher(rules.WatcherConfig{
		Brokers: cfg.Brokers, ClientOpts: cfg.KafkaConnOpts, Topic: cfg.Topics.Name(schemas.TopicRules), Registerer: cfg.Registry,
		Logger: cfg.Logger.With("stage", "processor", "component", "rules"),
		OnSwap: func(s *rules.Set) {
			cfg.Logger.Info("mapping rules in effect", "stage", "processor", "rules", s.Len())
		},
	})
	if err != nil {
		return nil, nil, fmt.Errorf("creating the rules watcher: %w", err)
	}
	return w, rules.Mapper[*Event]{Rules: w.Set, Event: RuleEvent}, nil
}

// Rules returns the rule set in effect on this instance (empty when rules are disabled or not read yet).
func (p *Processor) Rules() *rules.Set {
	if p.watcher == nil {
		s, _ := rules.NewSet(nil)
		return s
	}
	return p.watcher.Set()
}

// errRulesStopped is returned when the rules watcher ends before the processor does.
var errRulesStopped = errors.New("rules watcher stopped")

// runWatcher starts the rules watcher and waits until the rules that existed at start are in effect, so no
// covered event comes out unmapped. The watcher's error (or its unexpected end) cancels the processing through
// cancel, errgroup style: wait returns the watcher's error once it has stopped.
func (p *Processor) runWatcher(ctx context.Context, cancel context.CancelCauseFunc) (wait func() error, err error) {
	if p.watcher == nil {
		return func() error { return nil }, nil
	}
	done := make(chan error, 1)
	go func() {
		err := p.watcher.Run(ctx)
		if err == nil && ctx.Err() == nil {
			err = errRulesStopped
		}
		if err != nil {
			cancel(fmt.Errorf("mapping rules: %w", err))
		}
		done <- err
	}()
	wait = func() error { return <-done }
	select {
	case <-p.watcher.Ready():
		p.log.Info("mapping rules ready", "rules", p.watcher.Set().Len())
		return wait, nil
	case <-ctx.Done():
		return wait, nil
	}
}

// rulesAPI returns the rules HTTP handler for the admin listener, or nil (with a log line) when there is no
// admin token: the API is never served without one.
func (p *Processor) rulesAPI() (http.Handler, func(), error) {
	if p.watcher == nil {
		return nil, func() {}, nil
	}
	if p.cfg.AdminToken == "" {
		p.log.Warn("rules HTTP API disabled: no admin token (env SIGNALSTAGE_ADMIN_TOKEN or -admin-token-file)")
		return nil, func() {}, nil
	}
	cl, err := kgo.NewClient(p.cfg.kafkaOpts()...)
	if err != nil {
		return nil, nil, fmt.Errorf("creating the rules publisher: %w", err)
	}
	h, err := rules.NewHandler(rules.HandlerConfig{Token: p.cfg.AdminToken, Rules: p.watcher.Set,
		Publisher: rules.NewPublisher(cl, p.cfg.Topics.Name(schemas.TopicRules)),
		Logger:    p.log.With("component", "rules-api")})
	if err != nil {
		cl.Close()
		return nil, nil, fmt.Errorf("creating the rules HTTP API: %w", err)
	}
	p.log.Info("rules HTTP API enabled", "path", rules.APIPrefix)
	return h, cl.Close, nil
}
