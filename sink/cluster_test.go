package sink_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/sink"
	"github.com/signalstage/signalstage/testenv"
)

// history is a generated multi-tenant history: what the analyst queries see, and what must be stored once.
type history struct {
	records []*kgo.Record // in production order, on the topics of the env that made them
	signals int           // distinct signal ids
	linked  int           // distinct linked signal ids (lead_signals rows after FINAL)
	tenants []string
	leads   map[string][]string // tenant -> some emails
}

// makeHistory generates, for each of tenants tenants, visitors with page views and tracks over the last 45 days
// (at ages away from the queries' 1, 7 and 30 day and 60 minute edges, so two runs a minute apart agree): a third
// of the visitors identify, which re-emits their earlier signals linked as version 2 and writes an identity link;
// one signal in seven is delivered twice.
func makeHistory(e *env, tenants, visitors int, now time.Time) *history {
	h := &history{leads: map[string][]string{}}
	ages := []time.Duration{3 * time.Minute, 17 * time.Minute, 41 * time.Minute, 2 * time.Hour, 5 * time.Hour,
		30 * time.Hour, 3 * 24 * time.Hour, 5 * 24 * time.Hour, 10 * 24 * time.Hour, 20 * 24 * time.Hour, 40 * 24 * time.Hour}
	paths := []string{"/pricing", "/pricing/enterprise", "/docs/start", "/docs/api", "/blog/launch", "/demo"}
	utm := []string{"", "", "google", "newsletter", "linkedin"}
	n := 0
	for ti := range tenants {
		tenant := fmt.Sprintf("tenant%02d", ti)
		h.tenants = append(h.tenants, tenant)
		for v := range visitors {
			anon := fmt.Sprintf("anon-%d-%d", ti, v)
			email := ""
			if v%3 == 0 {
				email = fmt.Sprintf("lead%d@%s.test", v, tenant)
				if len(h.leads[tenant]) < 3 {
					h.leads[tenant] = append(h.leads[tenant], email)
				}
			}
			var held []schemas.Signal
			for k := range 4 + v%5 {
				n++
				at := now.Add(-ages[(v+k*3)%len(ages)] - time.Duration(n%50)*time.Second)
				s := signal(tenant, n)
				s.SignalID, s.MessageID, s.AnonymousID = fmt.Sprintf("sig-%s-%d-%d", tenant, v, k), fmt.Sprintf("m-%d", n), anon
				s.EventTime, s.ReceivedAt, s.ProcessedAt = at, at.Add(time.Second), at.Add(2*time.Second)
				if k%2 == 0 {
					p := paths[(v+k)%len(paths)]
					s.Type, s.Event, s.PageName = "page", strings.Trim(p, "/"), strings.Trim(p, "/")
					s.URL, s.PagePath = "https://"+tenant+".test"+p, p
					s.UTMSource = utm[(v+k)%len(utm)]
				} else {
					s.Event = []string{"Clicked", "Form Submitted", "Signup Started"}[(v+k)%3]
				}
				s.Payload = []byte(fmt.Sprintf(`{"n":%d}`, n))
				h.records = append(h.records, e.signalRecord(s))
				if n%7 == 0 {
					h.records = append(h.records, e.signalRecord(s))
				}
				h.signals++
				held = append(held, s)
			}
			if email == "" {
				continue
			}
			n++
			at := now.Add(-time.Duration(90+v) * time.Second)
			id := signal(tenant, n)
			id.SignalID, id.MessageID, id.AnonymousID, id.Type, id.Event = fmt.Sprintf("sig-%s-%d-id", tenant, v),
				fmt.Sprintf("m-%d", n), anon, "identify", "identify"
			id.Status, id.Email, id.Traits = schemas.StatusLinked, email, fmt.Sprintf(`{"name":"Lead %d","company":"C%d"}`, v, v%4)
			id.EventTime, id.ReceivedAt, id.ProcessedAt = at, at, at
			h.records = append(h.records, e.signalRecord(id))
			h.signals++
			h.linked++
			h.records = append(h.records, e.identityRecord(schemas.IdentityLink{Tenant: tenant, IDKind: schemas.IDKindAnonymous,
				ID: anon, Email: email, AnonymousID: anon, LinkedAt: at, SignalID: id.SignalID, Traits: id.Traits}))
			for i, s := range held {
				if i == len(held)-1 && v%2 == 0 {
					continue // its hold expired: stays cold, identities_latest says whose it is
				}
				s.Version, s.Status, s.Email = 2, schemas.StatusLinked, email
				h.records = append(h.records, e.signalRecord(s))
				h.linked++
			}
		}
	}
	return h
}

// retarget returns copies of recs on k's topics (same base topic, key and value).
func retarget(recs []*kgo.Record, from, to *testenv.Kafka) []*kgo.Record {
	out := make([]*kgo.Record, len(recs))
	bases := map[string]string{}
	for _, b := range []string{schemas.TopicResolved, schemas.TopicIdentities, schemas.TopicDLQ} {
		bases[from.Topic(b)] = to.Topic(b)
	}
	for i, r := range recs {
		out[i] = &kgo.Record{Topic: bases[r.Topic], Key: r.Key, Value: r.Value}
	}
	return out
}

// buildSink builds the sink binary into a temporary directory.
func buildSink(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	_, file, _, _ := runtime.Caller(0)
	cmd := exec.Command("go", "build", "-o", dir+"/", "./sink/cmd/sink")
	cmd.Dir = filepath.Dir(filepath.Dir(file))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the sink: %v\n%s", err, out)
	}
	return filepath.Join(dir, "sink")
}

// lockedBuffer is a log both the process and the test touch.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// startClusterSink runs the sink binary on c for k's topics until the test ends (SIGINT, then SIGKILL).
func startClusterSink(t *testing.T, bin string, k *testenv.Kafka, c *testenv.ClickHouseCluster) *lockedBuffer {
	t.Helper()
	var shards []string
	for s := 1; s <= 2; s++ {
		var rs []string
		for _, n := range c.Nodes {
			if n.Shard == s {
				rs = append(rs, n.Addr)
			}
		}
		shards = append(shards, strings.Join(rs, ","))
	}
	log := &lockedBuffer{}
	cmd := exec.Command(bin, "-brokers", strings.Join(k.Brokers, ","), "-topic-prefix", k.Prefix, "-partitions", "3",
		"-clickhouse-cluster", c.Cluster, "-clickhouse-shards", strings.Join(shards, ";"),
		"-clickhouse-database", c.Database, "-metrics-addr", "", "-flush-interval", "300ms", "-retry-max", "2s",
		"-log-level", "warn")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("--- cluster sink log:\n%s", log.String())
		}
	})
	return log
}

func scalar(t *testing.T, conn driver.Conn, query string) uint64 {
	t.Helper()
	var n uint64
	if err := conn.QueryRow(context.Background(), query).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

func waitScalar(t *testing.T, conn driver.Conn, want uint64, timeout time.Duration, query string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var got uint64
	var err error
	for time.Now().Before(deadline) {
		if err = conn.QueryRow(context.Background(), query).Scan(&got); err == nil && got == want {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("%s: got %d (err %v), want %d after %s", query, got, err, want, timeout)
}

// TestClusterSinkChaos runs the sink binary on the 2x2 ClickHouse cluster while a generated history of 16
// tenants is produced: one replica of shard 1 is SIGKILLed mid-load and started again, then ZooKeeper is
// stopped and started. Afterwards every signal is in the cluster exactly once through the Distributed tables
// and the latest views, both replicas of each shard hold the same rows, every row sits on the shard its
// tenant's hash names, and every analyst query answers on the cluster exactly what it answers on the single
// local ClickHouse loaded with the same records by an ordinary sink.
func TestClusterSinkChaos(t *testing.T) {
	c := testenv.NewClickHouseCluster(t)
	single := newEnv(t) // single-node baseline: its own topics and database
	ck := testenv.NewKafka(t, 3)
	bin := buildSink(t)
	start := time.Now()
	now := time.Now().UTC().Truncate(time.Second)
	h := makeHistory(single, 16, 60, now)
	t.Logf("history: %d records, %d signals (%d linked rows) over %d tenants", len(h.records), h.signals, h.linked, len(h.tenants))

	startClusterSink(t, bin, ck, c)
	single.start(single.config())
	clusterRecs := retarget(h.records, single.k, ck)

	// The first twentieth now; the rest in chunks every 500 ms through the faults.
	chunk := len(clusterRecs)/20 + 1
	cl := ck.Client()
	defer cl.Close()
	if err := cl.ProduceSync(context.Background(), clusterRecs[:chunk]...).FirstErr(); err != nil {
		t.Fatalf("producing: %v", err)
	}
	s1r1, s1r2 := c.Node("s1r1"), c.Node("s1r2")
	// Faults once the sink has migrated every node and is loading (a sink that cannot migrate exits).
	deadline := time.Now().Add(time.Minute)
	for {
		var n uint64
		if err := s1r1.Conn.QueryRow(context.Background(), "SELECT count() FROM signals").Scan(&n); err == nil && n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the cluster sink loaded nothing within a minute")
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("loading at %s", time.Since(start).Round(time.Millisecond))
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		for i := chunk; i < len(clusterRecs); i += chunk {
			time.Sleep(500 * time.Millisecond)
			if err := cl.ProduceSync(context.Background(), clusterRecs[i:min(i+chunk, len(clusterRecs))]...).FirstErr(); err != nil {
				t.Errorf("producing: %v", err)
				return
			}
		}
	}()
	single.produce(h.records...)
	s1r2.Kill()
	t.Logf("%s SIGKILLed at %s", s1r2.Name, time.Since(start).Round(time.Millisecond))
	time.Sleep(3 * time.Second)
	s1r2.Start()
	t.Logf("%s back at %s", s1r2.Name, time.Since(start).Round(time.Millisecond))
	c.StopZooKeeper()
	t.Logf("ZooKeeper stopped at %s", time.Since(start).Round(time.Millisecond))
	time.Sleep(3 * time.Second)
	c.StartZooKeeper()
	t.Logf("ZooKeeper back at %s", time.Since(start).Round(time.Millisecond))
	<-produced

	want := uint64(h.signals)
	q := s1r1.Conn
	waitScalar(t, q, want, 4*time.Minute, "SELECT count() FROM signals_latest")
	t.Logf("every signal in the cluster at %s", time.Since(start).Round(time.Millisecond))
	single.waitCount(want, 2*time.Minute, "SELECT count() FROM signals_latest")
	if got := scalar(t, q, "SELECT uniqExact(signal_id) FROM signals_latest"); got != want {
		t.Fatalf("cluster: %d distinct signals, want %d", got, want)
	}
	// The materialized views finish after their insert's rows show in signals.
	waitScalar(t, q, uint64(h.linked), time.Minute, "SELECT count() FROM lead_signals FINAL")
	single.waitCount(uint64(h.linked), time.Minute, "SELECT count() FROM lead_signals FINAL")

	// Both replicas of each shard hold the same rows, and only rows whose tenant hashes to that shard.
	var perShard [2]uint64
	for _, n := range c.Nodes {
		if err := n.Conn.Exec(context.Background(), "SYSTEM SYNC REPLICA signals_local"); err != nil {
			t.Fatalf("sync replica on %s: %v", n.Name, err)
		}
		got := scalar(t, n.Conn, "SELECT count() FROM signals_local FINAL")
		if perShard[n.Shard-1] != 0 && got != perShard[n.Shard-1] {
			t.Errorf("%s holds %d signals, its shard's other replica %d", n.Name, got, perShard[n.Shard-1])
		}
		perShard[n.Shard-1] = got
		if bad := scalar(t, n.Conn, fmt.Sprintf("SELECT count() FROM signals_local WHERE %s %% 2 != %d",
			sink.ShardingKey, n.Shard-1)); bad != 0 {
			t.Errorf("%s holds %d rows of the other shard's tenants", n.Name, bad)
		}
	}
	if perShard[0] == 0 || perShard[1] == 0 || perShard[0]+perShard[1] != want {
		t.Errorf("shards hold %d + %d signals, want %d in all, on both", perShard[0], perShard[1], want)
	}
	t.Logf("shard 1: %d signals, shard 2: %d", perShard[0], perShard[1])

	// The tables and views analysts read, then every analyst query for several tenants and leads.
	for _, query := range []string{
		"SELECT count() FROM identities_latest", "SELECT count() FROM leads",
		"SELECT sum(signals) FROM signal_queue_minute", "SELECT count() FROM lead_fields FINAL",
		"SELECT sum(version) FROM signals_latest", "SELECT countIf(status = 'cold') FROM signals_latest",
	} {
		if got, base := scalar(t, q, query), scalar(t, single.ch.Conn, query); got != base {
			t.Errorf("%s: cluster %d, single node %d", query, got, base)
		}
	}
	compareQueries(t, h, q, single.ch.Conn)
	t.Logf("cluster suite done in %s", time.Since(start).Round(time.Millisecond))
}

// compareQueries runs every analyst query on both connections for the first tenants of h and fails on any
// difference.
func compareQueries(t *testing.T, h *history, cluster, single driver.Conn) {
	t.Helper()
	all, err := sink.Queries()
	if err != nil {
		t.Fatal(err)
	}
	ran := 0
	for _, qu := range all {
		for _, tenant := range h.tenants[:4] {
			sets := []map[string]string{{"tenant": tenant, "limit": "20", "days": "7", "minutes": "60", "path_like": "/pricing%"}}
			if strings.Contains(qu.SQL, "{email:") {
				sets = nil
				for _, email := range h.leads[tenant] {
					sets = append(sets, map[string]string{"tenant": tenant, "email": email})
				}
			}
			for _, p := range sets {
				got, err := qu.Run(context.Background(), cluster, p)
				if err != nil {
					t.Fatalf("%s %v on the cluster: %v", qu.Name, p, err)
				}
				base, err := qu.Run(context.Background(), single, p)
				if err != nil {
					t.Fatalf("%s %v on one node: %v", qu.Name, p, err)
				}
				if len(base.Rows) == 0 {
					t.Errorf("%s %v: no rows on one node; the history does not exercise it", qu.Name, p)
				}
				if !reflect.DeepEqual(got.Maps(), base.Maps()) {
					t.Errorf("%s %v: cluster and single node differ:\ncluster: %v\nsingle:  %v", qu.Name, p, got.Maps(), base.Maps())
				}
				ran++
			}
		}
	}
	t.Logf("%d analyst query runs agree between the cluster and one node", ran)
}

// TestClusterSinkQuorum: an insert counts as done only when both replicas of its shard hold it. With one
// replica of shard 1 stopped, the sink's batch (rows of a shard-1 and a shard-2 tenant) fails for shard 1 and is
// retried: no offset is committed, shard 1's live replica has taken no row (the quorum refuses the write), and
// the shard-2 part, inserted again on every retry, is one row per signal (dropped as a duplicate where the views
// deduplicate too, else folded by FINAL: see clusterWriter.probe). Once the replica is back, both replicas of
// shard 1 hold every row, the offsets are committed, and shard 2 still holds each signal once. Then an erasure removes a visitor's rows from both replicas of its shard.
func TestClusterSinkQuorum(t *testing.T) {
	c := testenv.NewClickHouseCluster(t)
	e := &env{t: t, k: testenv.NewKafka(t, 3)}
	bin := buildSink(t)
	startClusterSink(t, bin, e.k, c)
	s1r1, s1r2, s2r1 := c.Node("s1r1"), c.Node("s1r2"), c.Node("s2r1")
	all, err := sink.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range c.Nodes { // the sink has migrated every node
		waitScalar(t, n.Conn, uint64(len(all)), time.Minute, "SELECT uniqExact(version) FROM schema_migrations")
	}
	// Two tenants, one per shard.
	byShard := map[uint64]string{}
	for i := 0; len(byShard) < 2; i++ {
		tenant := fmt.Sprintf("q%d", i)
		byShard[scalar(t, s1r1.Conn, fmt.Sprintf("SELECT toUInt64(cityHash64('%s') %% 2)", tenant))] = tenant
	}
	on1, on2 := byShard[0], byShard[1]

	s1r2.Stop()
	var recs []*kgo.Record
	for i := range 100 {
		recs = append(recs, e.signalRecord(signal(on1, i)), e.signalRecord(signal(on2, i)))
	}
	e.produce(recs...)
	resolved := e.k.Topic(schemas.TopicResolved)
	waitScalar(t, s2r1.Conn, 100, time.Minute, "SELECT count() FROM signals_local")
	time.Sleep(5 * time.Second) // several retries of the whole batch
	if n := scalar(t, s1r1.Conn, "SELECT count() FROM signals_local"); n != 0 {
		t.Fatalf("shard 1's live replica took %d rows with its other replica down: the quorum was not asked", n)
	}
	if got := e.committed(resolved); got != 0 {
		t.Fatalf("offsets committed up to %d while shard 1 had not taken its rows", got)
	}
	// Where the materialized views deduplicate too, a retried block is dropped as a duplicate; on 18.16 it is
	// stored again (the sink turns insert_deduplicate off there: see clusterWriter.probe) and folded.
	viewsDedup := scalar(t, s2r1.Conn, "SELECT count() FROM system.settings WHERE name = 'deduplicate_blocks_in_dependent_materialized_views'") > 0
	shard2 := "SELECT count() FROM signals_local FINAL"
	if viewsDedup {
		shard2 = "SELECT count() FROM signals_local"
	}
	if n := scalar(t, s2r1.Conn, shard2); n != 100 {
		t.Fatalf("%s on shard 2 after the retries: %d, want 100", shard2, n)
	}
	t.Logf("shard 2: %d rows stored for 100 signals after the retries (views deduplicate: %v)",
		scalar(t, s2r1.Conn, "SELECT count() FROM signals_local"), viewsDedup)

	s1r2.Start()
	e.waitCommitted(resolved, 200, 2*time.Minute)
	for _, n := range []*testenv.ClickHouseNode{s1r1, s1r2} {
		if got := scalar(t, n.Conn, "SELECT count() FROM signals_local FINAL"); got != 100 {
			t.Errorf("%s holds %d rows once the offsets are committed, want 100", n.Name, got)
		}
	}
	if n := scalar(t, s2r1.Conn, shard2); n != 100 {
		t.Errorf("%s on shard 2: %d, want 100", shard2, n)
	}
	if n := scalar(t, s1r1.Conn, "SELECT count() FROM signals_latest"); n != 200 {
		t.Errorf("signals_latest has %d rows, want 200", n)
	}

	// An erasure on the cluster: the mutation goes to the replicated tables of every shard (a Distributed
	// table takes none), and both replicas of shard 1 lose the visitor's 10 signals (and keep a later one).
	var shards [][]string
	for s := 1; s <= 2; s++ {
		var rs []string
		for _, n := range c.Nodes {
			if n.Shard == s {
				rs = append(rs, n.Addr)
			}
		}
		shards = append(shards, rs)
	}
	cfg := sink.Config{Brokers: e.k.Brokers, Topics: e.k.Topics, ClickHouseAddr: s1r1.Addr, Database: c.Database,
		ClickHouseCluster: c.Cluster, ClickHouseShards: shards}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, rep, err := sink.Forget(ctx, cfg, sink.ForgetRequest{Tenant: on1, AnonymousID: "anon-3", Wait: time.Minute})
	if err != nil {
		t.Fatalf("forget on the cluster: %v", err)
	}
	t.Logf("erasure report: %+v", rep)
	// ClickHouse 18.16 neither merges nor mutates the last part written with a quorum (its last_part in
	// ZooKeeper): the mutation of that part waits for the next quorum insert into the table.
	e.produce(e.signalRecord(signal(on1, 1000)))
	for _, n := range []*testenv.ClickHouseNode{s1r1, s1r2} {
		waitScalar(t, n.Conn, 91, time.Minute, "SELECT count() FROM signals_local FINAL")
	}
	if n := scalar(t, s2r1.Conn, shard2); n != 100 {
		t.Errorf("%s on shard 2 after another tenant's erasure: %d, want 100", shard2, n)
	}
}
