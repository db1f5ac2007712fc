package console

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/schemas"
)

// tailEvent is one resolved signal as the live tail sends it.
type tailEvent struct {
	Time       string `json:"time"`
	Tenant     string `json:"tenant"`
	Source     string `json:"source"`
	Type       string `json:"type"`
	Event      string `json:"event"`
	Status     string `json:"status"`
	Email      string `json:"email"`
	Visitor    string `json:"visitor"`
	RuleID     string `json:"rule_id"`
	MappedName string `json:"mapped_name"`
	Version    int64  `json:"version"`
}

func (s *Server) tailPage(w http.ResponseWriter, r *http.Request, sess *session) {
	tenants, err := s.tenants(r.Context())
	if err != nil {
		s.fail(w, sess, err)
		return
	}
	q := r.URL.Query()
	tenants = sess.visible(tenants)
	s.render(w, http.StatusOK, "tail", sess, map[string]any{"Tenants": tenants, "Tenant": q.Get("tenant"), "Event": q.Get("event")})
}

// tailStream sends signals.resolved as server-sent events from its end at connect time onwards, read committed
// (the processor writes transactionally), filtered by tenant (exact) and event (substring of the event or mapped
// name, case-insensitive). Each stream has its own consumer without a group: nothing is committed, and a tail
// never takes partitions from the sink. The first event, "ready", is sent once the end offsets are known, so
// anything resolved after it is in the stream.
func (s *Server) tailStream(w http.ResponseWriter, r *http.Request, sess *session) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	ctx := r.Context()
	tenant, event := r.URL.Query().Get("tenant"), strings.ToLower(r.URL.Query().Get("event"))
	topic := s.cfg.Sink.Topics.Name(schemas.TopicResolved)
	reg, err := s.schemaRegistry(ctx)
	if err != nil {
		http.Error(w, fmt.Sprintf("-schema-registry: %v", err), http.StatusBadGateway)
		return
	}

	ends, err := kadm.NewClient(s.kafka).ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		http.Error(w, fmt.Sprintf("listing %s's end offsets: %v", topic, err), http.StatusBadGateway)
		return
	}
	start := map[string]map[int32]kgo.Offset{topic: {}}
	ends.Each(func(o kadm.ListedOffset) { start[topic][o.Partition] = kgo.NewOffset().At(o.Offset) })
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.cfg.Sink.Brokers...), kgo.ConsumePartitions(start),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(500*time.Millisecond))
	if err != nil {
		http.Error(w, fmt.Sprintf("creating the tail's kafka client: %v", err), http.StatusBadGateway)
		return
	}
	defer cl.Close()

	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	fmt.Fprintf(w, "event: ready\ndata: %s\n\n", topic)
	flusher.Flush()

	lastWrite := time.Now()
	for ctx.Err() == nil {
		fetches := cl.PollRecords(ctx, 500)
		if ctx.Err() != nil {
			return
		}
		wrote := false
		fetches.EachRecord(func(rec *kgo.Record) {
			var sig schemas.Signal
			if schemas.Signals.DecodeWith(reg, rec.Value, &sig) != nil {
				return
			}
			if tenant != "" && sig.Tenant != tenant || !sess.allowed(sig.Tenant) {
				return
			}
			if event != "" && !strings.Contains(strings.ToLower(sig.Event), event) && !strings.Contains(strings.ToLower(sig.MappedName), event) {
				return
			}
			visitor := sig.AnonymousID
			if visitor == "" {
				visitor = sig.UserID
			}
			b, _ := json.Marshal(tailEvent{Time: sig.EventTime.UTC().Format(time.RFC3339), Tenant: sig.Tenant, Source: sig.Source,
				Type: sig.Type, Event: sig.Event, Status: sig.Status, Email: sig.Email, Visitor: visitor, RuleID: sig.RuleID,
				MappedName: sig.MappedName, Version: sig.Version})
			fmt.Fprintf(w, "event: signal\ndata: %s\n\n", b)
			wrote = true
		})
		// A comment now and then, so proxies keep the stream open and a closed tab is noticed.
		if !wrote && time.Since(lastWrite) > 15*time.Second {
			fmt.Fprint(w, ": keepalive\n\n")
			wrote = true
		}
		if wrote {
			lastWrite = time.Now()
			flusher.Flush()
		}
	}
}
