package testenv

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// startSecuredStage is startStage with extra environment variables (the stage inherits the test's environment).
func startSecuredStage(t *testing.T, bin, name string, env []string, args ...string) *stage {
	t.Helper()
	s := &stage{name: name, log: &bytes.Buffer{}}
	s.cmd = exec.Command(filepath.Join(bin, name), args...)
	s.cmd.Env = append(os.Environ(), env...)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	t.Cleanup(func() {
		_ = s.cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = s.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = s.cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("--- %s log:\n%s", name, s.log.String())
		}
	})
	return s
}

// TestPipelineSASLSSL runs ingest, processor and sink as subprocesses against a broker whose only listener they
// are given is SASL_SSL with mutual TLS (certificates made by the test): each stage with another mechanism
// (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) and its password from another source (the variable, <VAR>_FILE, the
// -file flag). A Segment event posted to ingest must arrive in ClickHouse, and no stage's log may hold the
// password. Then a stage given a wrong password must exit with an error that says the credentials were refused,
// and -h must list the flags without showing the password.
func TestPipelineSASLSSL(t *testing.T) {
	pk := NewPrivateKafka(t, WithClientCertificates())
	sec := pk.Security
	ch := NewClickHouse(t)
	bin := buildStages(t)
	_, file, _, _ := runtime.Caller(0)
	keys := filepath.Join(filepath.Dir(file), "dev-keys.json")
	pwFile := filepath.Join(t.TempDir(), "kafka-password")
	if err := os.WriteFile(pwFile, []byte(sec.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	prefix := uniqueName(t, 20) + "."
	common := []string{"-brokers", sec.Addr, "-topic-prefix", prefix, "-partitions", "3"}
	// TLS settings from the variables for every stage; the user and mechanism from flags.
	tlsEnv := []string{"SIGNALSTAGE_KAFKA_TLS_CA_FILE=" + sec.CAFile, "SIGNALSTAGE_KAFKA_TLS_CERT_FILE=" + sec.ClientCertFile,
		"SIGNALSTAGE_KAFKA_TLS_KEY_FILE=" + sec.ClientKeyFile, "SIGNALSTAGE_KAFKA_TLS_SERVER_NAME=localhost"}
	sasl := func(mech string) []string {
		return []string{"-kafka-sasl-mechanism", mech, "-kafka-sasl-user", sec.User}
	}

	stages := []*stage{
		startSecuredStage(t, bin, "sink", tlsEnv, append(append(common, sasl(MechanismScramSHA512)...),
			"-kafka-sasl-password-file", pwFile, "-clickhouse-addr", ch.Addr, "-clickhouse-database", ch.Database,
			"-metrics-addr", freeAddr(t))...),
		startSecuredStage(t, bin, "processor", append(tlsEnv, "SIGNALSTAGE_KAFKA_SASL_PASSWORD_FILE="+pwFile),
			append(append(common, sasl(MechanismScramSHA256)...), "-state-dir", t.TempDir(), "-admin-addr", freeAddr(t))...),
	}
	ingestAddr := freeAddr(t)
	stages = append(stages, startSecuredStage(t, bin, "ingest", append(tlsEnv, "SIGNALSTAGE_KAFKA_SASL_PASSWORD="+sec.Password),
		append(append(common, sasl(MechanismPlain)...), "-addr", ingestAddr, "-admin-addr", freeAddr(t), "-keys", keys)...))
	base := "http://" + ingestAddr
	waitFor(t, 90*time.Second, "ingest /readyz over SASL_SSL", func() bool {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	msg := fmt.Sprintf("sasl-%d", time.Now().UnixNano())
	event := `{"type":"track","event":"Demo Requested","anonymousId":"anon-sasl","messageId":"` + msg +
		`","timestamp":"2026-11-30T10:00:00Z"}`
	resp, err := http.Post(base+"/api/signal-staging/webhook/dev-key", "application/json", strings.NewReader(event))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("track: got %d, want 200", resp.StatusCode)
	}
	var ev string
	waitFor(t, 120*time.Second, "the event in ClickHouse through SASL_SSL", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return ch.Conn.QueryRow(ctx, "SELECT event FROM signals FINAL WHERE message_id = ?", msg).Scan(&ev) == nil
	})
	if ev != "Demo Requested" {
		t.Fatalf("event = %q", ev)
	}
	for _, s := range stages {
		if strings.Contains(s.log.String(), sec.Password) {
			t.Errorf("%s logged the SASL password", s.name)
		}
	}

	// A wrong password: the stage exits, and says the broker refused its credentials.
	for _, name := range []string{"ingest", "processor", "sink"} {
		args := append(append([]string{}, common...), sasl(MechanismScramSHA512)...)
		if name == "ingest" {
			args = append(args, "-addr", freeAddr(t), "-admin-addr", freeAddr(t), "-keys", keys)
		} else if name == "processor" {
			args = append(args, "-state-dir", t.TempDir(), "-admin-addr", freeAddr(t))
		} else {
			args = append(args, "-clickhouse-addr", ch.Addr, "-clickhouse-database", ch.Database, "-metrics-addr", "")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		cmd := exec.CommandContext(ctx, filepath.Join(bin, name), args...)
		cmd.Env = append(append(os.Environ(), tlsEnv...), "SIGNALSTAGE_KAFKA_SASL_PASSWORD=wrong-"+sec.Password)
		out, err := cmd.CombinedOutput()
		timedOut := ctx.Err()
		cancel()
		if err == nil || timedOut != nil {
			t.Fatalf("%s with a wrong password: err %v (timeout %v), want an exit of its own\n%s", name, err, timedOut, out)
		}
		if !strings.Contains(string(out), "kafka refused the SASL credentials") || !strings.Contains(string(out), "SASL_AUTHENTICATION_FAILED") {
			t.Fatalf("%s with a wrong password: the error does not say the credentials were refused:\n%s", name, out)
		}
		if strings.Contains(string(out), sec.Password) {
			t.Fatalf("%s printed the password it was given", name)
		}
		t.Logf("%s with a wrong password: %s", name, lastLine(out))
	}

	// -h lists the security flags and never the password, even when the variable holds it.
	for _, name := range []string{"ingest", "processor", "sink"} {
		cmd := exec.Command(filepath.Join(bin, name), "-h")
		cmd.Env = append(os.Environ(), "SIGNALSTAGE_KAFKA_SASL_PASSWORD="+sec.Password, "SIGNALSTAGE_CLICKHOUSE_PASSWORD="+sec.Password,
			"SIGNALSTAGE_ADMIN_TOKEN="+sec.Password)
		out, _ := cmd.CombinedOutput()
		for _, want := range []string{"-kafka-tls-ca-file", "-kafka-tls-cert-file", "-kafka-tls-server-name", "-kafka-sasl-mechanism",
			"-kafka-sasl-user", "-kafka-sasl-password-file", "SIGNALSTAGE_KAFKA_SASL_PASSWORD"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("%s -h does not list %s", name, want)
			}
		}
		if name == "processor" && !strings.Contains(string(out), "-admin-token-file") {
			t.Errorf("processor -h does not list -admin-token-file")
		}
		if name == "sink" {
			for _, want := range []string{"-clickhouse-password-file", "-clickhouse-tls-ca-file", "-clickhouse-tls-server-name"} {
				if !strings.Contains(string(out), want) {
					t.Errorf("sink -h does not list %s", want)
				}
			}
		}
		if strings.Contains(string(out), sec.Password) {
			t.Errorf("%s -h shows the password", name)
		}
	}
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}
