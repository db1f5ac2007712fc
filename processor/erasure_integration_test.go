package processor

import (
	"context"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/testenv"
)

// TestErasureOnTheBroker: a processor subprocess links Ann (a held page view, then an identify with her
// anonymousId and userId) and Bob; an erasure of Ann's email is published on signals.erasures; her later events
// (by anonymousId, by userId, by email from a new device) are not emitted while Bob's are, and tombstones of her
// ids appear on identities. Then the binary is stopped, `processor replay` rewinds to the start and a processor
// on an empty disk (restored from the changelog) replays everything: Bob's signals come out again, none of
// Ann's, and erasure_suppressed_total counts her five events.
func TestErasureOnTheBroker(t *testing.T) {
	const tn = "acme"
	k := testenv.NewKafka(t, 3)
	bin := buildProcessor(t)
	produce(t, k, rawIn{tn, pageOf("a-ann", "", "/pricing")}, rawIn{tn, identifyAs("a-ann", "u-ann", "ann@acme.test")},
		rawIn{tn, identifyAs("a-bob", "", "bob@acme.test")})
	cmd := startBinary(t, bin, k, t.TempDir(), "run1")
	before := settle(t, k, 4, time.Second) // Ann's page cold, her identify, the page rehydrated; Bob's identify
	if len(before) != 4 {
		t.Fatalf("%d signals before the erasure, want 4", len(before))
	}

	e := &schemas.Erasure{Tenant: tn, RequestID: "req-1", Email: "ann@acme.test", RequestedAt: time.Now().UTC()}
	b, err := schemas.Erasures.Encode(e)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Client().ProduceSync(context.Background(), &kgo.Record{Topic: k.Topic(schemas.TopicErasures),
		Key: schemas.ErasureKey(e), Value: b}).FirstErr(); err != nil {
		t.Fatalf("publishing the erasure: %v", err)
	}
	// The processor follows signals.erasures with a consumer polling at most a second apart: give it that
	// (events processed before it reads the request are emitted; the sink's suppression list covers those).
	time.Sleep(3 * time.Second)
	produce(t, k, rawIn{tn, pageOf("a-ann", "", "/after")}, rawIn{tn, pageOf("", "u-ann", "/after")},
		rawIn{tn, identifyAs("a-new", "", "ann@acme.test")}, rawIn{tn, pageOf("a-bob", "", "/after")})
	after := settle(t, k, 5, 2*time.Second)
	if len(after) != 5 || !hasSignal(after[4:], "a-bob") {
		for _, s := range after[4:] {
			t.Logf("after the erasure: %s %s %s %s", s.Status, s.AnonymousID, s.UserID, s.Email)
		}
		t.Fatalf("%d signals after the erasure, want 5 (only Bob's new page)", len(after))
	}
	tombs := map[string]bool{}
	for _, r := range k.ReadToEnd(k.Topic(schemas.TopicIdentities), time.Minute) {
		if r.Value == nil {
			tombs[string(r.Key)] = true
		}
	}
	for _, key := range []string{"acme|a-ann", "acme|u-ann"} {
		if !tombs[key] {
			t.Errorf("no tombstone of %s on identities (tombstones: %v)", key, tombs)
		}
	}
	if tombs["acme|a-bob"] {
		t.Error("bob's link tombstoned")
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_, _ = cmd.Process.Wait()
	var out []byte
	for range 40 { // the group may list the stopped member for a moment
		out, err = exec.Command(bin, "replay", "-brokers", k.Brokers[0], "-topic-prefix", k.Prefix,
			"-partitions", "3", "-from", "2000-01-01T00:00:00Z").CombinedOutput()
		if err == nil {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("replay: %v\n%s", err, out)
	}
	r := startProcessor(t, k, t.TempDir(), "replayed", nil)
	replayed := settle(t, k, 7, 2*time.Second) // Bob's identify and page again
	r.stop(t)
	for _, s := range replayed[5:] {
		if s.Email == "ann@acme.test" || s.AnonymousID == "a-ann" || s.UserID == "u-ann" || s.AnonymousID == "a-new" {
			t.Errorf("the replay emitted Ann's %s %s (%s)", s.Type, s.Event, s.Status)
		}
	}
	if len(replayed) != 7 {
		t.Errorf("%d signals after the replay, want 7", len(replayed))
	}
	if n := counterValue(t, r.reg, "signalstage_processor_erasure_suppressed_total", nil); n != 5 {
		t.Errorf("erasure_suppressed_total %v after the replay, want Ann's 5 events", n)
	}
}

func hasSignal(sigs []schemas.Signal, anon string) bool {
	for _, s := range sigs {
		if s.AnonymousID == anon {
			return true
		}
	}
	return false
}
