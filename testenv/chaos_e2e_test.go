package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/signalstage/signalstage/schemas"
)

// TestChaosPipeline is `make chaos`: the three binaries as subprocesses on a private broker and a private
// ClickHouse server, under paced load from HTTP clients that retry anything not answered 200 and re-send batches
// they already had accepted (Segment delivers at least once, regrouping batches). While the load runs, one after
// the other: ingest is SIGKILLed and restarted, the processor likewise, a second processor joins and is SIGKILLed
// (its partitions move back after its session timeout), the sink is SIGKILLed and restarted, the broker is
// SIGKILLed and restarted, ClickHouse is stopped and, while it is down, the sink is SIGKILLed;
// then both start again. Afterwards:
//   - signals_latest holds exactly the accepted events, each under one signal id and in one row;
//   - signals.resolved (read committed) holds each (signal id, version) once; the raw signals table holds each
//     signal's newest version of the topic and nothing the topic does not hold: nothing lost between the topic
//     and ClickHouse, nothing invented;
//   - no signal has more versions than its story allows: one for a visitor never identified (a re-sent event
//     the processor failed to recognise would be a second), at most two for a visitor's events before its
//     identify (cold, then linked), one after it;
//   - each identified visitor's signals, the anonymous ones sent before its identify included, are linked to its
//     lead's email, its link is in identities_latest, and the other visitors' signals are cold.
func TestChaosPipeline(t *testing.T) {
	start := time.Now()
	pk := NewPrivateKafka(t)
	k := NewKafkaOn(t, pk.Brokers(), 3)
	chs := NewPrivateClickHouse(t)
	const database = "signalstage_chaos" // the sink creates it
	bin := buildStages(t)
	_, file, _, _ := runtime.Caller(0)
	keys := filepath.Join(filepath.Dir(file), "dev-keys.json")
	common := []string{"-brokers", pk.Brokers()[0], "-topic-prefix", k.Prefix, "-partitions", "3"}

	ingestAddr, ingestAdmin, sinkAdmin := freeAddr(t), freeAddr(t), freeAddr(t)
	ingest := &chaosStage{t: t, bin: bin, name: "ingest", label: "ingest", ready: "http://" + ingestAdmin + "/readyz",
		args: append(common, "-addr", ingestAddr, "-admin-addr", ingestAdmin, "-keys", keys)}
	sink := &chaosStage{t: t, bin: bin, name: "sink", label: "sink", ready: "http://" + sinkAdmin + "/readyz",
		args: append(common, "-clickhouse-addr", chs.Addr, "-clickhouse-database", database, "-metrics-addr", sinkAdmin,
			"-instance-id", "chaos-sink")}
	newProcessor := func(name string) *chaosStage {
		admin := freeAddr(t)
		return &chaosStage{t: t, bin: bin, name: "processor", label: name, ready: "http://" + admin + "/readyz",
			args: append(common, "-state-dir", t.TempDir(), "-admin-addr", admin, "-transactional-id", k.Prefix+name,
				"-instance-id", name, "-max-poll-records", "500")}
	}
	proc, proc2 := newProcessor("processor"), newProcessor("processor-2")
	for _, s := range []*chaosStage{sink, proc, ingest} {
		s.start()
	}
	for _, s := range []*chaosStage{sink, proc, ingest} {
		s.waitReady(90 * time.Second)
	}
	t.Logf("pipeline ready %s after the start", time.Since(start).Round(time.Millisecond))

	load := newChaosLoad(t, "http://"+ingestAddr+"/api/signal-staging/webhook/dev-key")
	load.run(4, 5, 200*time.Millisecond)

	// The faults, each once the pipeline is back from the previous one and has moved on.
	step := func(what string, fault func()) {
		t.Helper()
		load.waitProgress(150, time.Minute, "before: "+what)
		began := time.Now()
		fault()
		faulted := time.Since(began)
		var ready []string
		for _, s := range []*chaosStage{ingest, proc, sink} {
			s.waitReady(2 * time.Minute)
			ready = append(ready, fmt.Sprintf("%s %s", s.label, time.Since(began).Round(100*time.Millisecond)))
		}
		t.Logf("%-44s fault %s, ready: %s (%d events accepted so far)", what, faulted.Round(100*time.Millisecond),
			strings.Join(ready, ", "), load.count())
	}
	step("SIGKILL ingest, restart", func() { ingest.kill(); ingest.start() })
	step("SIGKILL processor, restart", func() { proc.kill(); proc.start() })
	step("second processor joins, SIGKILLed", func() {
		proc2.start()
		waitFor(t, 2*time.Minute, "processor-2 ready with partitions of its own", func() bool {
			var r struct{ Partitions []int32 }
			return proc2.readyBody(&r) && len(r.Partitions) > 0
		})
		load.waitProgress(150, time.Minute, "with two processors")
		proc2.kill()
	})
	step("SIGKILL sink, restart", func() { sink.kill(); sink.start() })
	step("SIGKILL broker, restart", func() {
		pk.Kill()
		time.Sleep(2 * time.Second)
		pk.Start()
	})
	// With ClickHouse down the sink holds rows it could not insert: SIGKILLed then, a sink that had committed
	// their offsets would lose them.
	step("stop ClickHouse, SIGKILL sink, start both", func() {
		chs.Stop()
		load.waitProgress(100, time.Minute, "with ClickHouse down")
		time.Sleep(2 * time.Second) // the processor's transactions of those events commit, the sink fetches them
		sink.kill()
		chs.Start()
		sink.start()
	})
	load.waitProgress(150, time.Minute, "after the last fault")
	accepted := load.stop()
	t.Logf("load: %d events accepted (%d requests, %d answered other than 200 or not at all, %d events re-sent after a 200), "+
		"%d visitors identified; faults done %s after the start", len(accepted), load.requests, load.failed, load.resent,
		len(load.leads), time.Since(start).Round(time.Millisecond))

	conn := openClickHouse(t, chs.Addr, database)
	t.Cleanup(func() { _ = conn.Close() })
	rows := waitChaosRows(t, conn, accepted, load.leads)
	checkChaosRows(t, rows, accepted, load.leads)
	checkChaosVersions(t, k, conn, accepted, load.leads)
	checkChaosIdentities(t, conn, load.leads)
	for _, s := range []*chaosStage{ingest, proc, sink} {
		if s.exited() {
			t.Errorf("%s exited on its own", s.label)
		}
	}
	if !t.Failed() {
		t.Logf("every accepted event in ClickHouse exactly once, identities linked; %s in all", time.Since(start).Round(time.Millisecond))
	}
}

// chaosStage is a stage that is killed and started again on the same flags (state dir, ids, ports).
type chaosStage struct {
	t     *testing.T
	bin   string
	name  string // the binary's
	label string // in the test's messages: the name, or which processor
	args  []string
	ready string // its /readyz URL
	cur   *stage
}

func (s *chaosStage) start() { s.t.Helper(); s.cur = startStage(s.t, s.bin, s.name, s.args...) }

// kill SIGKILLs the stage and waits until it is gone.
func (s *chaosStage) kill() {
	s.t.Helper()
	if err := s.cur.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		s.t.Fatalf("SIGKILL %s: %v", s.label, err)
	}
	_ = s.cur.cmd.Wait()
}

func (s *chaosStage) exited() bool {
	return s.cur.cmd.ProcessState != nil || s.cur.cmd.Process.Signal(syscall.Signal(0)) != nil
}

func (s *chaosStage) waitReady(timeout time.Duration) {
	s.t.Helper()
	waitFor(s.t, timeout, s.label+" /readyz", func() bool { return s.readyBody(nil) })
}

// readyBody reports whether /readyz answers 200, and decodes its JSON into v (unless nil).
func (s *chaosStage) readyBody(v any) bool {
	resp, err := http.Get(s.ready)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false
	}
	return v == nil || json.NewDecoder(resp.Body).Decode(v) == nil
}

// chaosEvent is an accepted event: its visitor, and whether it was sent after the visitor's identify was accepted.
type chaosEvent struct {
	visitor       string
	afterIdentify bool
}

// chaosLoad is the clients: each sends its own visitors' events in batches, one request at a time, retrying a
// request until it is answered 200 (a new sentAt on every attempt, as clients set it when they send), and every
// third request also re-sends the events of the previous accepted one.
type chaosLoad struct {
	t                        *testing.T
	url                      string
	runID                    string
	mu                       sync.Mutex
	accepted                 map[string]chaosEvent // message id
	leads                    map[string]string     // visitor -> lead email, once its identify was accepted
	requests, failed, resent int
	stopc                    chan struct{}
	wg                       sync.WaitGroup
	errs                     chan error
}

func newChaosLoad(t *testing.T, url string) *chaosLoad {
	return &chaosLoad{t: t, url: url, runID: fmt.Sprint(time.Now().UnixNano() % 1e9), accepted: map[string]chaosEvent{},
		leads: map[string]string{}, stopc: make(chan struct{}), errs: make(chan error, 16)}
}

func (l *chaosLoad) count() int { l.mu.Lock(); defer l.mu.Unlock(); return len(l.accepted) }

// waitProgress waits until n more events than now are accepted.
func (l *chaosLoad) waitProgress(n int, timeout time.Duration, what string) {
	l.t.Helper()
	want := l.count() + n
	waitFor(l.t, timeout, fmt.Sprintf("%d accepted events (%s)", want, what), func() bool {
		select {
		case err := <-l.errs:
			l.t.Fatal(err)
		default:
		}
		return l.count() >= want
	})
}

// run starts clients clients, each sending batches of batch events every pace.
func (l *chaosLoad) run(clients, batch int, pace time.Duration) {
	for c := range clients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			if err := l.client(c, batch, pace); err != nil {
				l.errs <- err
			}
		}()
	}
}

// stop ends the load once every client's request under way has been accepted, and returns what was accepted.
func (l *chaosLoad) stop() map[string]chaosEvent {
	l.t.Helper()
	close(l.stopc)
	l.wg.Wait()
	select {
	case err := <-l.errs:
		l.t.Fatal(err)
	default:
	}
	return l.accepted
}

// A visitor's story: chaosSteps events; an identified visitor (every other one) sends its identify at step
// chaosIdentifyAt, and its later events carry its userId too, as Segment's clients do once identified.
const (
	chaosSteps      = 10
	chaosIdentifyAt = 6
)

type chaosVisitor struct {
	id         string
	step       int
	identified bool
}

func (l *chaosLoad) client(c, batch int, pace time.Duration) error {
	var visitors []*chaosVisitor
	next := 0
	newVisitor := func() *chaosVisitor {
		next++
		return &chaosVisitor{id: fmt.Sprintf("cv-%s-%d-%d", l.runID, c, next)}
	}
	for range batch * 2 {
		visitors = append(visitors, newVisitor())
	}
	var previous []string // events of the last accepted request
	for n := 0; ; n++ {
		select {
		case <-l.stopc:
			return nil
		case <-time.After(pace):
		}
		type ev struct {
			msg, body string
			visitor   *chaosVisitor
			identify  bool
		}
		var evs []ev
		for i := range batch {
			v := visitors[(n*batch+i)%len(visitors)]
			msg := fmt.Sprintf("%s-%d", v.id, v.step)
			var body string
			switch {
			case v.step == chaosIdentifyAt && next%2 == 0:
				body = fmt.Sprintf(`{"type":"identify","anonymousId":%q,"userId":"u-%s","messageId":%q,"traits":{"email":"%s@chaos.test","name":"Lead %d"}`,
					v.id, v.id, msg, v.id, v.step)
			case v.identified:
				body = fmt.Sprintf(`{"type":"track","anonymousId":%q,"userId":"u-%s","messageId":%q,"event":"Demo Requested","properties":{"step":%d}`,
					v.id, v.id, msg, v.step)
			case v.step%2 == 0:
				body = fmt.Sprintf(`{"type":"page","anonymousId":%q,"messageId":%q,"properties":{"url":"https://chaos.test/p/%d","name":"P%d"}`,
					v.id, msg, v.step, v.step)
			default:
				body = fmt.Sprintf(`{"type":"track","anonymousId":%q,"messageId":%q,"event":"Viewed","properties":{"step":%d}`,
					v.id, msg, v.step)
			}
			evs = append(evs, ev{msg, body, v, v.step == chaosIdentifyAt && next%2 == 0})
			v.step++
		}
		bodies := make([]string, 0, len(evs)+len(previous))
		for _, e := range evs {
			bodies = append(bodies, e.body)
		}
		resend := n%3 == 2 && len(previous) > 0
		if resend {
			bodies = append(bodies, previous...)
		}
		if err := l.send(bodies); err != nil {
			return fmt.Errorf("client %d: %w", c, err)
		}
		l.mu.Lock()
		for _, e := range evs {
			l.accepted[e.msg] = chaosEvent{visitor: e.visitor.id, afterIdentify: e.visitor.identified}
			if e.identify {
				e.visitor.identified = true
				l.leads[e.visitor.id] = e.visitor.id + "@chaos.test"
			}
		}
		if resend {
			l.resent += len(previous)
		}
		l.mu.Unlock()
		previous = bodies[:len(evs)]
		for i, v := range visitors {
			if v.step >= chaosSteps {
				visitors[i] = newVisitor()
			}
		}
	}
}

// send posts the events as one {"batch":[...]} request until it is answered 200, for at most three minutes.
func (l *chaosLoad) send(events []string) error {
	backoff := 100 * time.Millisecond
	deadline := time.Now().Add(3 * time.Minute)
	for attempt := 1; ; attempt++ {
		sentAt := time.Now().UTC().Format(time.RFC3339Nano)
		var b bytes.Buffer
		b.WriteString(`{"batch":[`)
		for i, e := range events {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `%s,"sentAt":%q}`, e, sentAt)
		}
		b.WriteString(`]}`)
		code, msg := l.post(b.Bytes())
		l.mu.Lock()
		l.requests++
		if code != http.StatusOK {
			l.failed++
		}
		l.mu.Unlock()
		if code == http.StatusOK {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("a request not accepted after %d attempts: last %d %s", attempt, code, msg)
		}
		time.Sleep(backoff)
		backoff = min(2*backoff, time.Second)
	}
}

var chaosHTTP = &http.Client{Timeout: 15 * time.Second}

func (l *chaosLoad) post(body []byte) (int, string) {
	resp, err := chaosHTTP.Post(l.url, "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	return resp.StatusCode, string(b)
}

// chaosRow is a row of signals_latest.
type chaosRow struct {
	msg, id, status, email, anon string
}

// waitChaosRows reads signals_latest until it has a row for every accepted event and every identified visitor's
// rows are linked, waiting as long as it keeps changing: it fails once nothing changed for a minute.
func waitChaosRows(t *testing.T, conn driver.Conn, accepted map[string]chaosEvent, leads map[string]string) []chaosRow {
	t.Helper()
	var rows []chaosRow
	last, lastChange := "", time.Now()
	for {
		rows = readChaosRows(t, conn)
		present, linked, want := 0, 0, 0
		for _, r := range rows {
			e, ok := accepted[r.msg]
			if ok {
				present++
			}
			if _, lead := leads[e.visitor]; ok && lead && r.status == schemas.StatusLinked {
				linked++
			}
		}
		for _, e := range accepted {
			if _, ok := leads[e.visitor]; ok {
				want++
			}
		}
		if present == len(accepted) && linked == want {
			return rows
		}
		state := fmt.Sprintf("%d rows, %d of %d accepted events present, %d of %d identified visitors' events linked",
			len(rows), present, len(accepted), linked, want)
		if state != last {
			last, lastChange = state, time.Now()
		} else if time.Since(lastChange) > time.Minute {
			t.Logf("signals_latest stopped changing a minute ago: %s", state)
			return rows // the checks say what is missing
		}
		time.Sleep(time.Second)
	}
}

func readChaosRows(t *testing.T, conn driver.Conn) []chaosRow {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rs, err := conn.Query(ctx, "SELECT message_id, signal_id, status, email, anonymous_id FROM signals_latest WHERE tenant = 'dev'")
	if err != nil {
		t.Fatalf("reading signals_latest: %v", err)
	}
	defer rs.Close()
	var out []chaosRow
	for rs.Next() {
		var r chaosRow
		if err := rs.Scan(&r.msg, &r.id, &r.status, &r.email, &r.anon); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// checkChaosRows: one row per accepted event, under one signal id, no other row, each linked to its visitor's
// lead if the visitor was identified and cold otherwise.
func checkChaosRows(t *testing.T, rows []chaosRow, accepted map[string]chaosEvent, leads map[string]string) {
	t.Helper()
	byMsg, byID := map[string]int{}, map[string]int{}
	var dup, extra, missing, wrong []string
	for _, r := range rows {
		byMsg[r.msg]++
		byID[r.id]++
		e, ok := accepted[r.msg]
		if !ok {
			extra = append(extra, r.msg)
			continue
		}
		want, wantStatus := leads[e.visitor], schemas.StatusCold
		if want != "" {
			wantStatus = schemas.StatusLinked
		}
		if r.status != wantStatus || r.email != want || r.anon != e.visitor {
			wrong = append(wrong, fmt.Sprintf("%s: %s %q (want %s %q)", r.msg, r.status, r.email, wantStatus, want))
		}
	}
	for m, n := range byMsg {
		if n > 1 {
			dup = append(dup, fmt.Sprintf("message %s x%d", m, n))
		}
	}
	for id, n := range byID {
		if n > 1 {
			dup = append(dup, fmt.Sprintf("signal %s x%d", id, n))
		}
	}
	for m := range accepted {
		if byMsg[m] == 0 {
			missing = append(missing, m)
		}
	}
	for _, s := range [][]string{dup, extra, missing, wrong} {
		sort.Strings(s)
	}
	if len(dup)+len(extra)+len(missing)+len(wrong) > 0 {
		t.Errorf("signals_latest: %d rows for %d accepted events: %d duplicated %v, %d not accepted %v, %d missing %v, "+
			"%d with the wrong status or lead %v", len(rows), len(accepted), len(dup), head5(dup), len(extra), head5(extra),
			len(missing), head5(missing), len(wrong), head5(wrong))
	}
}

// checkChaosVersions compares signals.resolved, read committed, with the raw signals table: each (id, version)
// once on the topic, each signal's newest in ClickHouse and nothing else, and no signal with more versions than
// its visitor's story gives.
func checkChaosVersions(t *testing.T, k *Kafka, conn driver.Conn, accepted map[string]chaosEvent, leads map[string]string) {
	t.Helper()
	topic := map[string]int{} // "id/version"
	versions := map[string]int{}
	msgOf := map[string]string{}
	newest := map[string]int64{}
	for _, r := range k.ReadToEnd(k.Topic(schemas.TopicResolved), 2*time.Minute) {
		var s schemas.Signal
		if err := schemas.Signals.Decode(r.Value, &s); err != nil {
			t.Fatalf("decoding a signal at %d/%d: %v", r.Partition, r.Offset, err)
		}
		key := fmt.Sprintf("%s/%d", s.SignalID, s.Version)
		if topic[key]++; topic[key] == 1 {
			versions[s.SignalID]++
		}
		msgOf[s.SignalID] = s.MessageID
		newest[s.SignalID] = max(newest[s.SignalID], s.Version)
	}
	var dup, tooMany []string
	for key, n := range topic {
		if n > 1 {
			dup = append(dup, fmt.Sprintf("%s x%d", key, n))
		}
	}
	for id, n := range versions {
		e := accepted[msgOf[id]]
		allowed := 1
		if _, ok := leads[e.visitor]; ok && !e.afterIdentify {
			allowed = 2 // cold, then linked by the identify
		}
		if n > allowed {
			tooMany = append(tooMany, fmt.Sprintf("%s (message %s): %d versions, at most %d", id, msgOf[id], n, allowed))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rs, err := conn.Query(ctx, "SELECT DISTINCT signal_id, version FROM signals")
	if err != nil {
		t.Fatalf("reading the signals table: %v", err)
	}
	defer rs.Close()
	table := map[string]bool{}
	for rs.Next() {
		var id string
		var v uint64
		if err := rs.Scan(&id, &v); err != nil {
			t.Fatal(err)
		}
		table[fmt.Sprintf("%s/%d", id, v)] = true
	}
	// Merges fold a signal's older versions away, so the table must have every pair it holds on the topic and
	// each signal's newest version of the topic.
	var notLoaded, notOnTopic []string
	for id, v := range newest {
		if !table[fmt.Sprintf("%s/%d", id, v)] {
			notLoaded = append(notLoaded, fmt.Sprintf("%s/%d", id, v))
		}
	}
	for key := range table {
		if topic[key] == 0 {
			notOnTopic = append(notOnTopic, key)
		}
	}
	for _, s := range [][]string{dup, tooMany, notLoaded, notOnTopic} {
		sort.Strings(s)
	}
	if len(dup)+len(tooMany)+len(notLoaded)+len(notOnTopic) > 0 {
		t.Errorf("%d (id, version) on signals.resolved, %d in the signals table: %d twice on the topic %v, %d signals "+
			"with too many versions %v, %d newest versions not in the table %v, %d loaded but not on the topic %v", len(topic), len(table),
			len(dup), head5(dup), len(tooMany), head5(tooMany), len(notLoaded), head5(notLoaded), len(notOnTopic), head5(notOnTopic))
	}
	if !t.Failed() {
		t.Logf("signals.resolved: %d (id, version) for %d signals, each once; the newest of each in ClickHouse", len(topic), len(versions))
	}
}

// checkChaosIdentities: each identified visitor's anonymous id is linked to its lead in identities_latest.
func checkChaosIdentities(t *testing.T, conn driver.Conn, leads map[string]string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rs, err := conn.Query(ctx, "SELECT id, email FROM identities_latest WHERE tenant = 'dev' AND id_kind = ?", schemas.IDKindAnonymous)
	if err != nil {
		t.Fatalf("reading identities_latest: %v", err)
	}
	defer rs.Close()
	got := map[string]string{}
	for rs.Next() {
		var id, email string
		if err := rs.Scan(&id, &email); err != nil {
			t.Fatal(err)
		}
		got[id] = email
	}
	var wrong []string
	for v, email := range leads {
		if got[v] != email {
			wrong = append(wrong, fmt.Sprintf("%s: %q, want %q", v, got[v], email))
		}
	}
	for v := range got {
		if _, ok := leads[v]; !ok {
			wrong = append(wrong, fmt.Sprintf("%s linked, never identified", v))
		}
	}
	sort.Strings(wrong)
	if len(wrong) > 0 {
		t.Errorf("identities_latest: %d of %d identified visitors wrong: %v", len(wrong), len(leads), head5(wrong))
	}
}

func head5(s []string) string {
	if len(s) > 5 {
		return strings.Join(s[:5], "; ") + "; ..."
	}
	return strings.Join(s, "; ")
}
