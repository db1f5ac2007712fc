package processor

import (
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/testenv"
)

func partitionOf(tenant, id string, n int) int {
	return kgo.StickyKeyPartitioner(nil).ForTopic("x").Partition(&kgo.Record{Key: schemas.RoutingKey(tenant, id)}, n)
}

func named(kind, anon, user, name, extra string) string {
	return fmt.Sprintf(`{"type":%q,"anonymousId":%q,"userId":%q,"event":%q,"messageId":%q%s}`, kind, anon, user, name, name, extra)
}

// TestIdentityFlows runs every identity flow of the issue through the real broker in three phases (before,
// identify, after), waiting for each phase's signals, then checks each flow's signals.
func TestIdentityFlows(t *testing.T) {
	const parts = 4
	k := testenv.NewKafka(t, parts)
	// userId on another partition than the anonymousId.
	gAnon, gUser := "g-anon", ""
	for i := 0; gUser == ""; i++ {
		if u := fmt.Sprint("g-user-", i); partitionOf("t", u, parts) != partitionOf("t", gAnon, parts) {
			gUser = u
		}
	}
	r := startProcessor(t, k, t.TempDir(), "p1", nil)
	email := func(e string) string { return fmt.Sprintf(`,"traits":{"email":%q,"name":"N","company":"C"}`, e) }

	phase := func(want int, ins ...rawIn) []schemas.Signal {
		t.Helper()
		produce(t, k, ins...)
		got := readSignals(t, k, want, 60*time.Second)
		if len(got) != want {
			t.Fatalf("got %d signals, want %d", len(got), want)
		}
		return got
	}
	phase(13,
		rawIn{"t", named("track", "a-A", "", "A-1", "")}, rawIn{"t", named("track", "a-A", "", "A-2", "")},
		rawIn{"t", named("track", "a-A", "", "A-3", "")},
		rawIn{"t", named("track", "a-B", "", "B-1", "")},
		rawIn{"t", named("track", "a-C", "", "C-1", "")},
		rawIn{"t", named("track", "null", "", "D-1", "")},
		rawIn{"t", named("track", "d1", "", "E-1", "")}, rawIn{"t", named("track", "d2", "", "E-2", "")},
		rawIn{"t", named("identify", "a-F", "", "F-id-old", email("old@f.io"))}, rawIn{"t", named("track", "a-F", "", "F-1", "")},
		rawIn{"t", named("track", "", gUser, "G-1", "")},
		rawIn{"tA", named("track", "shared", "", "H-A1", "")}, rawIn{"tB", named("track", "shared", "", "H-B1", "")},
	)
	phase(30,
		rawIn{"t", named("identify", "a-A", "u-A", "A-id", email("Ann@A.io"))},
		rawIn{"t", named("track", "a-B", "", "B-form", `,"properties":{"email":"b@b.io"}`)},
		rawIn{"t", named("identify", "a-C", "", "C-id", `,"traits":{"name":"No Email"}`)},
		rawIn{"t", named("identify", "null", "undefined", "D-id", email("d@d.io"))},
		rawIn{"t", named("identify", "d1", "", "E-id1", email("e@e.io"))}, rawIn{"t", named("identify", "d2", "", "E-id2", email("e@e.io"))},
		rawIn{"t", named("identify", "a-F", "", "F-id-new", email("new@f.io"))},
		rawIn{"t", named("identify", gAnon, gUser, "G-id", email("g@g.io"))},
		rawIn{"tA", named("identify", "shared", "", "H-idA", email("h@a.io"))},
	)
	got := phase(37,
		rawIn{"t", named("track", "a-A", "", "A-after", "")},
		rawIn{"t", named("track", "a-B", "", "B-after", "")},
		rawIn{"t", named("track", "a-C", "", "C-after", "")},
		rawIn{"t", named("track", "null", "", "D-after", "")},
		rawIn{"t", named("track", "a-F", "", "F-after", "")},
		rawIn{"t", named("track", "", gUser, "G-after", "")},
		rawIn{"tB", named("track", "shared", "", "H-B-after", "")},
	)
	got = readSignals(t, k, 38, 3*time.Second) // nothing more may arrive
	if len(got) != 37 {
		t.Fatalf("got %d signals after settling, want 37", len(got))
	}

	// latest version of each event, and all versions seen
	type seen struct {
		latest   schemas.Signal
		versions []int64
	}
	by := map[string]*seen{}
	for _, s := range got {
		e := by[s.MessageID]
		if e == nil {
			e = &seen{}
			by[s.MessageID] = e
		}
		e.versions = append(e.versions, versionCount(s.Version))
		if s.Version >= e.latest.Version {
			e.latest = s
		}
	}
	for _, tc := range []struct {
		flow, msg, status, email string
		versions                 int
	}{
		{"anonymous pages then identify", "A-1", schemas.StatusLinked, "ann@a.io", 2},
		{"anonymous pages then identify", "A-3", schemas.StatusLinked, "ann@a.io", 2},
		{"anonymous pages then identify", "A-id", schemas.StatusLinked, "ann@a.io", 1},
		{"anonymous pages then identify", "A-after", schemas.StatusLinked, "ann@a.io", 1},
		{"link by properties.email", "B-1", schemas.StatusLinked, "b@b.io", 2},
		{"link by properties.email", "B-after", schemas.StatusLinked, "b@b.io", 1},
		{"identify without email", "C-1", schemas.StatusCold, "", 1},
		{"identify without email", "C-id", schemas.StatusCold, "", 1},
		{"identify without email", "C-after", schemas.StatusCold, "", 1},
		{"illegal ids", "D-1", schemas.StatusCold, "", 1},
		{"illegal ids", "D-id", schemas.StatusLinked, "d@d.io", 1},
		{"illegal ids", "D-after", schemas.StatusCold, "", 1},
		{"two devices one email", "E-1", schemas.StatusLinked, "e@e.io", 2},
		{"two devices one email", "E-2", schemas.StatusLinked, "e@e.io", 2},
		{"changed email", "F-1", schemas.StatusLinked, "old@f.io", 1},
		{"changed email", "F-after", schemas.StatusLinked, "new@f.io", 1},
		{"userId on another partition", "G-1", schemas.StatusLinked, "g@g.io", 2},
		{"userId on another partition", "G-after", schemas.StatusLinked, "g@g.io", 1},
		{"same anonymousId in two tenants", "H-A1", schemas.StatusLinked, "h@a.io", 2},
		{"same anonymousId in two tenants", "H-B1", schemas.StatusCold, "", 1},
		{"same anonymousId in two tenants", "H-B-after", schemas.StatusCold, "", 1},
	} {
		e := by[tc.msg]
		if e == nil {
			t.Errorf("%s: no signal %s", tc.flow, tc.msg)
			continue
		}
		if e.latest.Status != tc.status || e.latest.Email != tc.email || len(e.versions) != tc.versions ||
			versionCount(e.latest.Version) != int64(tc.versions) {
			t.Errorf("%s: %s latest status %q email %q version %d, versions %v; want %q %q and %d versions",
				tc.flow, tc.msg, e.latest.Status, e.latest.Email, e.latest.Version, e.versions, tc.status, tc.email, tc.versions)
		}
	}
	if s := by["G-1"].latest; s.RawPartition != int32(partitionOf("t", gUser, parts)) {
		t.Errorf("G-1 read from partition %d, want the userId's %d", s.RawPartition, partitionOf("t", gUser, parts))
	}

	links := k.ReadToEnd(k.Topic(schemas.TopicIdentities), time.Minute) // committed with the signals checked above
	ids := map[string]string{}
	for _, rec := range links {
		var l schemas.IdentityLink
		if err := schemas.IdentityLinks.Decode(rec.Value, &l); err != nil {
			t.Fatal(err)
		}
		if want := string(schemas.RoutingKey(l.Tenant, l.ID)); string(rec.Key) != want {
			t.Errorf("link keyed %q, want %q", rec.Key, want)
		}
		ids[l.Tenant+"|"+l.ID] = l.Email
	}
	for id, want := range map[string]string{"t|a-A": "ann@a.io", "t|u-A": "ann@a.io", "t|" + gUser: "g@g.io",
		"t|a-F": "new@f.io", "tA|shared": "h@a.io", "t|null": "", "t|undefined": "", "t|a-C": "", "tB|shared": ""} {
		if ids[id] != want {
			t.Errorf("identities[%s] = %q, want %q", id, ids[id], want)
		}
	}
	if v := counterValue(t, r.reg, "signalstage_processor_signals_total", map[string]string{"kind": "rehydrated"}); v != 8 {
		t.Errorf("rehydrated metric = %v, want 8", v)
	}
	r.stop(t)
}

// TestAliasAcrossDevices: a device whose events carry an anonymousId and a userId, but which never identifies
// with an email itself, is linked when the userId is identified on another device, before or after: its held
// signals are rehydrated and its later events are linked, on its own partition.
func TestAliasAcrossDevices(t *testing.T) {
	const parts = 4
	k := testenv.NewKafka(t, parts)
	// Three devices and the user, on four different partitions.
	ids := map[int]string{}
	for i := 0; len(ids) < parts; i++ {
		id := fmt.Sprint("x", i)
		if _, ok := ids[partitionOf("t", id, parts)]; !ok {
			ids[partitionOf("t", id, parts)] = id
		}
	}
	user, d1, d2, d3 := ids[0], ids[1], ids[2], ids[3]
	r := startProcessor(t, k, t.TempDir(), "p", nil)
	email := `,"traits":{"email":"u@x.io"}`
	produce(t, k, rawIn{"t", named("track", d2, user, "D2-before", "")})
	if got := readSignals(t, k, 1, 30*time.Second); len(got) != 1 || got[0].Status != schemas.StatusCold {
		t.Fatalf("before: %+v", got)
	}
	// The user identifies on device 1: device 2's held signal is rehydrated through the alias.
	produce(t, k, rawIn{"t", named("identify", d1, user, "D1-id", email)})
	readSignals(t, k, 3, 30*time.Second)
	// Later events of device 2, and a new device 3 seen with the user after the identify.
	produce(t, k, rawIn{"t", named("track", d2, user, "D2-after", "")}, rawIn{"t", named("track", d3, user, "D3-new", "")})
	got := settle(t, k, 6, 3*time.Second)
	latest := map[string]schemas.Signal{}
	for _, s := range got {
		if s.Version >= latest[s.MessageID].Version {
			latest[s.MessageID] = s
		}
	}
	for _, tc := range []struct {
		msg     string
		version int64
	}{{"D2-before", 2}, {"D1-id", 1}, {"D2-after", 1}, {"D3-new", 2}} {
		s := latest[tc.msg]
		if s.Status != schemas.StatusLinked || s.Email != "u@x.io" || versionCount(s.Version) != tc.version {
			t.Errorf("%s: status %q email %q version %d; want linked u@x.io version %d", tc.msg, s.Status, s.Email, s.Version, tc.version)
		}
	}
	if len(got) != 6 {
		t.Errorf("got %d signals, want 6: %v", len(got), events(got))
	}
	r.stop(t)
}
