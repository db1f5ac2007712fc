package testenv

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// tlsProxy terminates TLS with a certificate for 127.0.0.1 and localhost signed by a CA of the test, and forwards
// each connection to target in plaintext. handshakes counts the TLS handshakes that completed.
func tlsProxy(t *testing.T, target string) (addr, caFile string, handshakes *atomic.Int64) {
	t.Helper()
	ca, caKey, caPEM, err := newCA()
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := newLeaf(ca, caKey, "127.0.0.1", x509.ExtKeyUsageServerAuth)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(leaf.certPEM, leaf.keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	handshakes = new(atomic.Int64)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if err := c.(*tls.Conn).Handshake(); err != nil {
					return
				}
				handshakes.Add(1)
				up, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer up.Close()
				go func() { _, _ = io.Copy(up, c); up.Close() }()
				_, _ = io.Copy(c, up)
			}()
		}
	}()
	return ln.Addr().String(), caFile, handshakes
}

// TestSinkClickHouseTLS: `sink migrate` reaches ClickHouse through a TLS endpoint when given its CA and server
// name, and refuses to without TLS or without trusting the CA; a password file that cannot be read is refused
// naming its flag.
func TestSinkClickHouseTLS(t *testing.T) {
	ch := NewClickHouse(t)
	bin := buildStages(t)
	addr, caFile, handshakes := tlsProxy(t, ch.Addr)
	run := func(env []string, args ...string) (string, error) {
		cmd := exec.Command(filepath.Join(bin, "sink"), append([]string{"migrate", "-clickhouse-addr", addr,
			"-clickhouse-database", ch.Database}, args...)...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run([]string{"SIGNALSTAGE_CLICKHOUSE_TLS_SERVER_NAME=localhost"}, "-clickhouse-tls-ca-file", caFile)
	if err != nil || !strings.Contains(out, "migrations up to date") {
		t.Fatalf("sink migrate over TLS: %v\n%s", err, out)
	}
	if handshakes.Load() == 0 {
		t.Fatal("sink migrate succeeded without a TLS handshake with the endpoint")
	}
	if out, err := run(nil); err == nil {
		t.Fatalf("sink migrate in plaintext against a TLS endpoint succeeded:\n%s", out)
	}
	out, err = run([]string{"SIGNALSTAGE_CLICKHOUSE_TLS=true"})
	if err == nil || !strings.Contains(out, "certificate") {
		t.Fatalf("sink migrate over TLS without trusting the CA: %v, want a certificate error\n%s", err, out)
	}
	t.Logf("without the CA: %s", lastLine([]byte(out)))
	out, err = run(nil, "-clickhouse-password-file", filepath.Join(t.TempDir(), "missing"))
	if err == nil || !strings.Contains(out, "-clickhouse-password-file") {
		t.Fatalf("an unreadable password file: %v, want an error naming -clickhouse-password-file\n%s", err, out)
	}
}
