package ingest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"sync/atomic"
	"testing"
	"time"

	analytics "github.com/segmentio/analytics-go/v3"

	"github.com/signalstage/signalstage/schemas"
)

func basic(key string) map[string]string {
	return map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte(key+":"))}
}

// TestV1API covers the Segment HTTP Tracking API: Basic auth, the type implied by the path, and /v1/batch's
// context merge (the event's own context wins).
func TestV1API(t *testing.T) {
	e := startEdge(t, nil)
	for _, tc := range []struct {
		name, path, body string
		hdr              map[string]string
		code             int
	}{
		{name: "no auth", path: "/v1/track", body: `{"event":"x","anonymousId":"a"}`, code: 401},
		{name: "unknown key", path: "/v1/track", body: `{"event":"x","anonymousId":"a"}`, hdr: basic("nope"), code: 401},
		{name: "other endpoint type", path: "/v1/track", body: `{"event":"x","anonymousId":"a"}`, hdr: basic("other-key"), code: 403},
		{name: "type mismatch", path: "/v1/track", body: `{"type":"page","anonymousId":"a"}`, hdr: basic("dev-key"), code: 400},
		{name: "no ids", path: "/v1/identify", body: `{"traits":{}}`, hdr: basic("dev-key"), code: 400},
		{name: "track", path: "/v1/track", body: `{"event":"Clicked","anonymousId":"v1-track"}`, hdr: basic("dev-key"), code: 200},
		{name: "identify", path: "/v1/identify", body: `{"type":"identify","userId":"v1-user","traits":{"email":"a@b.co"}}`, hdr: basic("dev-key"), code: 200},
		{name: "batch", path: "/v1/batch", hdr: basic("dev-key"), code: 200, body: `{"batch":[
			{"type":"page","anonymousId":"v1-page","context":{"ip":"1.2.3.4","library":{"name":"mine"}}},
			{"type":"track","event":"E","anonymousId":"v1-bt"}],
			"context":{"library":{"name":"analytics-go"},"app":{"name":"shop"}}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, r := post(t, e.url+tc.path, []byte(tc.body), tc.hdr)
			if resp.StatusCode != tc.code {
				t.Fatalf("got %d %+v, want %d", resp.StatusCode, r, tc.code)
			}
		})
	}
	recs, evs := e.readRaw(t)
	if len(recs) != 4 {
		t.Fatalf("signals.raw has %d records, want 4", len(recs))
	}
	got := map[string]map[string]any{}
	for i, ev := range evs {
		var m map[string]any
		if err := json.Unmarshal(ev.Payload, &m); err != nil {
			t.Fatalf("payload %s: %v", ev.Payload, err)
		}
		_, id, _ := schemas.SplitKey(recs[i].Key)
		got[id] = m
	}
	if got["v1-track"]["type"] != "track" {
		t.Errorf("/v1/track event without type: %v", got["v1-track"])
	}
	pageCtx, _ := got["v1-page"]["context"].(map[string]any)
	if fmt.Sprint(pageCtx["library"]) != "map[name:mine]" || fmt.Sprint(pageCtx["app"]) != "map[name:shop]" || pageCtx["ip"] != "1.2.3.4" {
		t.Errorf("merged context of an event with its own: %v", pageCtx)
	}
	btCtx, _ := got["v1-bt"]["context"].(map[string]any)
	if fmt.Sprint(btCtx["library"]) != "map[name:analytics-go]" {
		t.Errorf("context of an event without one: %v", btCtx)
	}
}

// TestSegmentLibrary drives the edge with Segment's own Go library and finds every event it sent in signals.raw.
func TestSegmentLibrary(t *testing.T) {
	e := startEdge(t, nil)
	var ok, failed atomic.Int64
	client, err := analytics.NewWithConfig("dev-key", analytics.Config{
		Endpoint:       e.url,
		Interval:       50 * time.Millisecond,
		BatchSize:      7,
		DefaultContext: &analytics.Context{App: analytics.AppInfo{Name: "lib-test"}},
		Callback:       callback{ok: &ok, failed: &failed},
		Logger:         analytics.StdLogger(log.New(io.Discard, "", 0)),
	})
	if err != nil {
		t.Fatal(err)
	}
	sent := map[string]string{} // messageId → type
	for i := range 30 {
		id := fmt.Sprintf("lib-msg-%d", i)
		anon := fmt.Sprintf("lib-anon-%d", i%5)
		var m analytics.Message
		switch i % 6 {
		case 0:
			m = analytics.Track{MessageId: id, AnonymousId: anon, Event: "Signed Up", Properties: analytics.NewProperties().Set("plan", "pro")}
		case 1:
			m = analytics.Identify{MessageId: id, AnonymousId: anon, UserId: "u" + anon, Traits: analytics.NewTraits().SetEmail("x@y.co")}
		case 2:
			m = analytics.Page{MessageId: id, AnonymousId: anon, Name: "Pricing", Properties: analytics.NewProperties().SetURL("https://x.co/pricing")}
		case 3:
			m = analytics.Screen{MessageId: id, AnonymousId: anon, Name: "Home"}
		case 4:
			m = analytics.Group{MessageId: id, AnonymousId: anon, GroupId: "g1"}
		case 5:
			m = analytics.Alias{MessageId: id, PreviousId: anon, UserId: "u" + anon}
		}
		if err := client.Enqueue(m); err != nil {
			t.Fatal(err)
		}
		sent[id] = []string{"track", "identify", "page", "screen", "group", "alias"}[i%6]
	}
	if err := client.Close(); err != nil {
		t.Fatal(err)
	}
	if ok.Load() != 30 || failed.Load() != 0 {
		t.Fatalf("library reports %d ok, %d failed; want 30 ok", ok.Load(), failed.Load())
	}
	_, evs := e.readRaw(t)
	if len(evs) != 30 {
		t.Fatalf("signals.raw has %d records, want 30", len(evs))
	}
	for _, ev := range evs {
		var m struct {
			Type      string `json:"type"`
			MessageID string `json:"messageId"`
			Context   struct {
				App     struct{ Name string } `json:"app"`
				Library struct{ Name string } `json:"library"`
			} `json:"context"`
		}
		if err := json.Unmarshal(ev.Payload, &m); err != nil {
			t.Fatalf("payload %s: %v", ev.Payload, err)
		}
		if sent[m.MessageID] != m.Type {
			t.Errorf("unexpected event %s of type %q", m.MessageID, m.Type)
		}
		if m.Context.App.Name != "lib-test" || m.Context.Library.Name != "analytics-go" {
			t.Errorf("%s: batch context not merged: %s", m.MessageID, ev.Payload)
		}
		if ev.Source != schemas.SourceSegment || ev.Tenant != "dev" {
			t.Errorf("%s: envelope %+v", m.MessageID, ev)
		}
		delete(sent, m.MessageID)
	}
	if len(sent) != 0 {
		t.Errorf("events not found in signals.raw: %v", sent)
	}
}

type callback struct{ ok, failed *atomic.Int64 }

func (c callback) Success(analytics.Message)        { c.ok.Add(1) }
func (c callback) Failure(analytics.Message, error) { c.failed.Add(1) }
