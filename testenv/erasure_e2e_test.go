package testenv

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/signalstage/signalstage/schemas"
)

// TestForgetThenReplayEndToEnd: the three binaries, the real Kafka and ClickHouse. Ann (a page view held cold, then
// an identify) and Bob reach ClickHouse; `sink forget -email` erases Ann; her next page view is not emitted by the
// processor (nothing of it on signals.resolved) while Bob's is; then the processor is stopped, `processor replay`
// rewinds to offset 0 and a processor on an empty disk replays everything: Bob's rows come back one version up,
// and neither signals.resolved nor ClickHouse has anything of Ann again.
func TestForgetThenReplayEndToEnd(t *testing.T) {
	k, ch := NewKafka(t, 3), NewClickHouse(t)
	bin := buildStages(t)
	_, file, _, _ := runtime.Caller(0)
	keys := filepath.Join(filepath.Dir(file), "dev-keys.json")
	common := []string{"-brokers", strings.Join(k.Brokers, ","), "-topic-prefix", k.Prefix, "-partitions", "3"}
	chFlags := []string{"-clickhouse-addr", ch.Addr, "-clickhouse-database", ch.Database}
	ingestAddr := freeAddr(t)
	startStage(t, bin, "sink", append(append(common, chFlags...), "-metrics-addr", freeAddr(t))...)
	processorArgs := func() []string { return append(common, "-state-dir", t.TempDir(), "-admin-addr", freeAddr(t)) }
	proc := startStage(t, bin, "processor", processorArgs()...)
	startStage(t, bin, "ingest", append(common, "-addr", ingestAddr, "-keys", keys)...)
	base := "http://" + ingestAddr
	waitFor(t, 60*time.Second, "ingest /readyz", func() bool {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	post := func(body string) {
		t.Helper()
		resp, err := http.Post(base+"/api/signal-staging/webhook/dev-key", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("posting %s: %d %s", body, resp.StatusCode, b)
		}
	}
	count := func(where string, args ...any) uint64 {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var n uint64
		if err := ch.Conn.QueryRow(ctx, "SELECT count() FROM signals WHERE "+where, args...).Scan(&n); err != nil {
			t.Fatalf("counting %s: %v", where, err)
		}
		return n
	}
	maxVersion := func(anon string) uint64 {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var v uint64
		if err := ch.Conn.QueryRow(ctx, "SELECT max(version) FROM signals WHERE anonymous_id = ?", anon).Scan(&v); err != nil {
			t.Fatalf("max version of %s: %v", anon, err)
		}
		return v
	}
	run := time.Now().UnixNano()
	ann, bob := fmt.Sprintf("ann-%d", run), fmt.Sprintf("bob-%d", run)
	annEmail := ann + "@acme.test"
	post(fmt.Sprintf(`{"type":"page","anonymousId":%q,"messageId":"%s-p1","properties":{"name":"Pricing"}}`, ann, ann))
	post(fmt.Sprintf(`{"type":"identify","anonymousId":%q,"userId":"u-%s","messageId":"%s-id","traits":{"email":%q}}`, ann, ann, ann, annEmail))
	post(fmt.Sprintf(`{"type":"identify","anonymousId":%q,"messageId":"%s-id","traits":{"email":"%s@acme.test"}}`, bob, bob, bob))
	waitFor(t, 90*time.Second, "Ann's page linked and Bob in ClickHouse", func() bool {
		return count("anonymous_id = ? AND status = 'linked' AND type = 'page'", ann) > 0 && count("anonymous_id = ?", bob) > 0
	})

	var errb bytes.Buffer
	forget := exec.Command(filepath.Join(bin, "sink"), append(append(append([]string{"forget"}, common...), chFlags...),
		"-tenant", "dev", "-email", annEmail)...)
	forget.Stderr = &errb
	if out, err := forget.Output(); err != nil {
		t.Fatalf("sink forget: %v\n%s%s", err, out, errb.String())
	}
	time.Sleep(3 * time.Second) // the processor follows signals.erasures with a poll at most a second apart
	post(fmt.Sprintf(`{"type":"page","anonymousId":%q,"messageId":"%s-p2","properties":{"name":"Docs"}}`, ann, ann))
	post(fmt.Sprintf(`{"type":"page","anonymousId":%q,"messageId":"%s-p2","properties":{"name":"Docs"}}`, bob, bob))
	waitFor(t, 90*time.Second, "Bob's second page in ClickHouse", func() bool {
		return count("anonymous_id = ? AND message_id = ?", bob, bob+"-p2") > 0
	})
	annResolved := func() (n int, after bool) {
		for _, r := range k.ReadToEnd(k.Topic(schemas.TopicResolved), time.Minute) {
			var s schemas.Signal
			if err := schemas.Signals.Decode(r.Value, &s); err != nil {
				t.Fatalf("decoding a signal: %v", err)
			}
			if s.AnonymousID == ann || s.Email == annEmail {
				n++
				after = after || s.MessageID == ann+"-p2"
			}
		}
		return n, after
	}
	nAnn, p2 := annResolved()
	if p2 {
		t.Fatal("the processor emitted Ann's page view after her erasure")
	}
	waitFor(t, 60*time.Second, "Ann's rows deleted from ClickHouse (a mutation on 18.16)", func() bool {
		return count("anonymous_id = ? OR email = ?", ann, annEmail) == 0
	})

	bobBefore := maxVersion(bob)
	_ = proc.cmd.Process.Signal(os.Interrupt)
	_, _ = proc.cmd.Process.Wait()
	waitFor(t, 60*time.Second, "the replay (the group empties once the stopped member's session ends)", func() bool {
		cmd := exec.Command(filepath.Join(bin, "processor"), append([]string{"replay"}, append(common, "-from", "0")...)...)
		return cmd.Run() == nil
	})
	startStage(t, bin, "processor", processorArgs()...)
	waitFor(t, 120*time.Second, "Bob's replayed rows in ClickHouse", func() bool { return maxVersion(bob) > bobBefore })
	if n, _ := annResolved(); n != nAnn {
		t.Errorf("the replay emitted %d signals of Ann (she had %d before her erasure)", n-nAnn, nAnn)
	}
	if n := count("anonymous_id = ? OR email = ? OR user_id = ?", ann, annEmail, "u-"+ann); n != 0 {
		t.Errorf("ClickHouse has %d rows of Ann after the replay", n)
	}
}
