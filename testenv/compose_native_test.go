package testenv

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestComposeEnvironmentNative runs the compose stack's wiring without a container runtime: the three real
// binaries, built the way deploy/Dockerfile builds them, each started with no flags and exactly the environment
// its service in deploy/docker-compose.yml gives it, after compose's interpolation with these variables pointed
// at this machine:
//
//	KAFKA_BROKERS          a TCP proxy per stage in front of the real broker (proves each stage used it)
//	CLICKHOUSE_ADDR        a private ClickHouse server with the user the clickhouse service creates
//	CLICKHOUSE_PASSWORD    that user's password (the server refuses the user without it)
//	INGEST_ADDR, PROCESSOR_ADMIN_ADDR, SINK_METRICS_ADDR   free loopback ports
//	TOPIC_PREFIX           a prefix of this test's own (the broker is shared)
//	INGEST_KEYS_FILE       the development key file, as deploy/.env.example has it
//
// Every other variable takes the compose file's default. Paths under a service's volumes are mapped to host
// directories (named volumes to empty temporary ones, bind mounts to their source). An event posted to ingest
// must reach ClickHouse.
func TestComposeEnvironmentNative(t *testing.T) {
	compose := readCompose(t)
	bin := buildLikeDockerfile(t)
	const user = "signalstage" // the compose default of CLICKHOUSE_USER
	password := "pw-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	ch := newPasswordClickHouse(t, user, password)
	prefix := uniqueName(t, 40) + "."
	adm := kafkaAdmin(t, prefix)

	ingestAddr, adminAddr, sinkAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	proxies := map[string]*tcpProxy{}
	deployDir := filepath.Join(repoRoot(), "deploy")
	for _, stage := range []string{"sink", "processor", "ingest"} {
		proxies[stage] = newTCPProxy(t, KafkaBrokers()[0])
		vars := map[string]string{
			"KAFKA_BROKERS": proxies[stage].addr, "TOPIC_PREFIX": prefix,
			"CLICKHOUSE_ADDR": ch.addr, "CLICKHOUSE_PASSWORD": password,
			"INGEST_ADDR": ingestAddr, "INGEST_ADMIN_ADDR": freeAddr(t), "PROCESSOR_ADMIN_ADDR": adminAddr, "SINK_METRICS_ADDR": sinkAddr,
			"INGEST_KEYS_FILE": "../testenv/dev-keys.json",
		}
		env, err := serviceEnv(compose.Services[stage], deployDir, func(k string) (string, bool) { v, ok := vars[k]; return v, ok },
			func(volume string) string { return t.TempDir() })
		if err != nil {
			t.Fatalf("service %s: %v", stage, err)
		}
		t.Logf("%s environment: %s", stage, strings.Join(redact(env, password), " "))
		startStageEnv(t, bin, stage, env)
	}

	base := "http://" + ingestAddr
	waitFor(t, 90*time.Second, "ingest /readyz at the compose INGEST_ADDR", func() bool { return httpStatus(base+"/readyz") == http.StatusOK })
	msg := fmt.Sprintf("m-compose-%d", time.Now().UnixNano())
	resp, err := http.Post(base+"/api/signal-staging/webhook/dev-key", "application/json", strings.NewReader(
		`{"type":"track","event":"Demo Requested","anonymousId":"anon-compose","messageId":"`+msg+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("posting to ingest with the dev key of the compose key file: %d %s", resp.StatusCode, b)
	}
	var tenant, event string
	waitFor(t, 90*time.Second, "the event in signalstage.signals (the compose CLICKHOUSE_DB)", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return ch.conn.QueryRow(ctx, "SELECT tenant, event FROM signalstage.signals FINAL WHERE message_id = ?", msg).
			Scan(&tenant, &event) == nil
	})
	if tenant != "dev" || event != "Demo Requested" {
		t.Fatalf("row: tenant %q event %q", tenant, event)
	}

	// The rest of the environment took effect too.
	for stage, p := range proxies {
		if p.accepted.Load() == 0 {
			t.Errorf("%s never connected to the broker address of its compose environment (SIGNALSTAGE_KAFKA_BROKERS)", stage)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	topics, err := adm.ListTopics(ctx, prefix+"signals.raw")
	if err != nil || topics[prefix+"signals.raw"].Err != nil || len(topics[prefix+"signals.raw"].Partitions) != 6 {
		t.Errorf("%ssignals.raw: want the topic the stages created with the compose default of 6 partitions: %v %+v", prefix, err, topics)
	}
	txn, err := adm.DescribeTransactions(ctx, prefix+"processor-1")
	if err != nil || txn[prefix+"processor-1"].Err != nil {
		t.Errorf("transactional id %sprocessor-1 (SIGNALSTAGE_PROCESSOR_TRANSACTIONAL_ID) unknown to the broker: %v %+v", prefix, err, txn)
	}
	if code := httpStatus("http://" + adminAddr + "/healthz"); code != http.StatusOK {
		t.Errorf("processor admin listener at the compose PROCESSOR_ADMIN_ADDR: %d", code)
	}
	if code := httpStatus("http://" + sinkAddr + "/metrics"); code != http.StatusOK {
		t.Errorf("sink metrics listener at the compose SINK_METRICS_ADDR: %d", code)
	}
}

// serviceEnv returns the environment of a compose service as its container would see it: every value
// interpolated with lookup, and every absolute path under one of the service's volume targets mapped to the
// host directory backing it (bind mounts relative to dir, named volumes from named). A path on no volume is an
// error: the stage containers' root filesystems are read-only.
func serviceEnv(svc composeService, dir string, lookup func(string) (string, bool), named func(string) string) ([]string, error) {
	mounts := map[string]string{}
	for _, v := range svc.Volumes {
		v, err := interpolate(v, lookup)
		if err != nil {
			return nil, fmt.Errorf("volume %s: %w", v, err)
		}
		parts := strings.Split(v, ":")
		if len(parts) < 2 {
			return nil, fmt.Errorf("volume %q: want SOURCE:TARGET", v)
		}
		src := parts[0]
		if strings.HasPrefix(src, ".") || strings.HasPrefix(src, "/") {
			if !filepath.IsAbs(src) {
				src = filepath.Join(dir, src)
			}
			if _, err := os.Stat(src); err != nil {
				return nil, fmt.Errorf("bind mount source: %w", err)
			}
		} else {
			src = named(src)
		}
		mounts[parts[1]] = src
	}
	var env []string
	for k, raw := range svc.Environment {
		v, err := interpolate(fmt.Sprint(raw), lookup)
		if err != nil {
			return nil, fmt.Errorf("environment %s: %w", k, err)
		}
		if strings.HasPrefix(v, "/") {
			mapped := false
			for target, src := range mounts {
				if v == target || strings.HasPrefix(v, target+"/") {
					v, mapped = src+v[len(target):], true
					break
				}
			}
			if !mapped {
				return nil, fmt.Errorf("environment %s=%s: not on one of the service's volumes, and the root filesystem is read-only", k, v)
			}
		}
		env = append(env, k+"="+v)
	}
	sort.Strings(env)
	return env, nil
}

func redact(env []string, secret string) []string {
	out := make([]string, len(env))
	for i, e := range env {
		out[i] = strings.ReplaceAll(e, secret, "<password>")
	}
	return out
}

// buildLikeDockerfile builds the three binaries with the Dockerfile's settings (CGO_ENABLED=0, -trimpath,
// -ldflags "-s -w").
func buildLikeDockerfile(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", dir+"/",
		"./ingest/cmd/ingest", "./processor/cmd/processor", "./sink/cmd/sink")
	cmd.Dir = repoRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building stages: %v\n%s", err, out)
	}
	return dir
}

// startStageEnv starts a stage binary with no arguments and exactly env (no inherited variables), stopped with
// SIGINT when the test ends; its log is printed if the test failed.
func startStageEnv(t *testing.T, bin, name string, env []string) {
	t.Helper()
	var log bytes.Buffer
	cmd := exec.Command(filepath.Join(bin, name))
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("--- %s log:\n%s", name, log.String())
		}
	})
}

// kafkaAdmin is an admin client on the real broker that deletes the topics under prefix when the test ends.
func kafkaAdmin(t *testing.T, prefix string) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(KafkaBrokers()...))
	if err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if _, err := adm.BrokerMetadata(ctx); err != nil {
		cl.Close()
		t.Fatalf("kafka at %v does not answer (%v): %s", KafkaBrokers(), err, howToStart)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if topics, err := adm.ListTopics(ctx); err == nil {
			var mine []string
			for _, name := range topics.Names() {
				if strings.HasPrefix(name, prefix) {
					mine = append(mine, name)
				}
			}
			if len(mine) > 0 {
				_, _ = adm.DeleteTopics(ctx, mine...)
			}
		}
		cl.Close()
	})
	return adm
}

// tcpProxy forwards every connection to target and counts them.
type tcpProxy struct {
	addr     string
	accepted atomic.Int64
}

func newTCPProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{addr: ln.Addr().String()}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.accepted.Add(1)
			go func() {
				defer c.Close()
				up, err := net.DialTimeout("tcp", target, 5*time.Second)
				if err != nil {
					return
				}
				defer up.Close()
				go func() { _, _ = io.Copy(up, c); up.Close() }()
				_, _ = io.Copy(c, up)
			}()
		}
	}()
	return p
}

// passwordClickHouse is a private ClickHouse server (services.sh, own cache and ports) with one more user,
// configured the way the clickhouse/clickhouse-server image configures CLICKHOUSE_USER and CLICKHOUSE_PASSWORD:
// a users.d file giving that user the password, any network and the default profile.
type passwordClickHouse struct {
	addr string
	conn driver.Conn // as the user, with the password
}

func newPasswordClickHouse(t *testing.T, user, password string) *passwordClickHouse {
	t.Helper()
	cache := t.TempDir()
	usersD := filepath.Join(cache, "clickhouse", "etc", "users.d")
	if err := os.MkdirAll(usersD, 0o755); err != nil {
		t.Fatal(err)
	}
	xml := fmt.Sprintf(`<?xml version="1.0"?>
<yandex><users><%[1]s>
  <password>%[2]s</password>
  <networks><ip>::/0</ip></networks>
  <profile>default</profile>
  <quota>default</quota>
</%[1]s></users></yandex>
`, user, password)
	if err := os.WriteFile(filepath.Join(usersD, user+".xml"), []byte(xml), 0o600); err != nil {
		t.Fatal(err)
	}
	tcp, httpPort := freePort(t), freePort(t)
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command("bash", append([]string{filepath.Join(repoRoot(), "testenv", "services.sh")}, args...)...)
		cmd.Env = append(os.Environ(), "SIGNALSTAGE_CACHE="+cache,
			"SIGNALSTAGE_CLICKHOUSE_PORT="+strconv.Itoa(tcp), "SIGNALSTAGE_CLICKHOUSE_HTTP_PORT="+strconv.Itoa(httpPort))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("services.sh %v: %v\n%s", args, err, out)
		}
	}
	run("up", "clickhouse")
	t.Cleanup(func() { run("down", "clickhouse") })

	p := &passwordClickHouse{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(tcp))}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	open := func(pw string) (driver.Conn, error) {
		c, err := clickhouse.Open(&clickhouse.Options{Addr: []string{p.addr}, DialTimeout: 5 * time.Second,
			Auth: clickhouse.Auth{Username: user, Password: pw}})
		if err == nil {
			err = c.Ping(ctx)
		}
		return c, err
	}
	if c, err := open(""); err == nil {
		c.Close()
		t.Fatalf("user %s logged in without its password: the test would not notice a sink without one", user)
	}
	var err error
	if p.conn, err = open(password); err != nil {
		t.Fatalf("user %s with its password: %v", user, err)
	}
	t.Cleanup(func() { p.conn.Close() })
	return p
}
