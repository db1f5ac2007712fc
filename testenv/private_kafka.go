package testenv

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// PrivateKafka is a Kafka broker of the test's own: a single KRaft broker+controller started by services.sh from
// the shared broker's jars, on free loopback ports, with its data and logs in <cache>/private/kafka-<test>/. A test
// can SIGKILL, stop and restart it without disturbing the shared broker other tests use. It is killed and its
// directory removed when the test ends; should the test binary die first, services.sh's watchdog kills it and
// the next NewPrivateKafka removes the directory.
type PrivateKafka struct {
	// Dir holds config/, data/, logs/ (server.log, stdout.log) and, with WithSASLSSL, tls/.
	Dir string
	// Security is set with WithSASLSSL or WithClientCertificates: what a client of the SASL_SSL listener needs.
	Security *KafkaSecurity

	port int
	t    testing.TB
	sh   servicesScript
}

type privateKafkaConfig struct {
	saslSSL, clientAuth bool
	props               []string
	javaOpts            string
}

// PrivateKafkaOption configures NewPrivateKafka.
type PrivateKafkaOption func(*privateKafkaConfig)

// WithSASLSSL adds a SASL_SSL listener (certificates made by the test, PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 for
// one user; see KafkaSecurity). The PLAINTEXT listener of Brokers stays, for the broker's own inter-broker
// traffic, the readiness probe and the test's setup.
func WithSASLSSL() PrivateKafkaOption { return func(c *privateKafkaConfig) { c.saslSSL = true } }

// WithClientCertificates is WithSASLSSL with the listener also requiring a client certificate signed by the test
// CA (mutual TLS under SASL).
func WithClientCertificates() PrivateKafkaOption {
	return func(c *privateKafkaConfig) { c.saslSSL, c.clientAuth = true, true }
}

// WithBrokerConfig sets a server property (after the defaults of services.sh, so it wins).
func WithBrokerConfig(key, value string) PrivateKafkaOption {
	return func(c *privateKafkaConfig) { c.props = append(c.props, key+"="+value) }
}

// WithJavaOpts replaces the broker JVM's flags (default -Xms64m -Xmx512m).
func WithJavaOpts(opts string) PrivateKafkaOption {
	return func(c *privateKafkaConfig) { c.javaOpts = opts }
}

// NewPrivateKafka starts a private broker and waits until it serves metadata and names a group and a
// transaction coordinator (about 3 to 6 s on this machine, see testenv/README.md).
func NewPrivateKafka(t testing.TB, opts ...PrivateKafkaOption) *PrivateKafka {
	t.Helper()
	cfg := privateKafkaConfig{javaOpts: "-Xms64m -Xmx512m"}
	for _, o := range opts {
		o(&cfg)
	}
	root := filepath.Join(cacheDir(), "private")
	removeAbandoned(root)
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp(root, "kafka-"+strings.TrimPrefix(uniqueName(t, 30), "t_")+"-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "owner.pid"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &PrivateKafka{Dir: dir, port: freePort(t), t: t}
	env := []string{
		"SIGNALSTAGE_KAFKA_DIR=" + dir,
		"SIGNALSTAGE_KAFKA_PORT=" + strconv.Itoa(p.port),
		"SIGNALSTAGE_KAFKA_CONTROLLER_PORT=" + strconv.Itoa(freePort(t)),
		"SIGNALSTAGE_KAFKA_JAVA_OPTS=" + cfg.javaOpts,
		ownerEnv(),
	}
	props := strings.Join(cfg.props, "\n")
	if cfg.saslSSL {
		sport := freePort(t)
		sec, sprops, scramArgs, err := newKafkaSecurity(dir, net.JoinHostPort("127.0.0.1", strconv.Itoa(sport)), cfg.clientAuth)
		if err != nil {
			t.Fatalf("making the broker's certificates: %v", err)
		}
		p.Security = sec
		props = sprops + props
		env = append(env, "SIGNALSTAGE_KAFKA_SASL_SSL_PORT="+strconv.Itoa(sport))
		writeConfigFile(t, filepath.Join(dir, "config", "scram-credentials"), scramArgs)
	}
	if props != "" {
		writeConfigFile(t, filepath.Join(dir, "config", "extra.properties"), props+"\n")
	}
	p.sh = servicesScript{env: env}
	t.Cleanup(func() {
		// Killed rather than stopped: nothing of it is kept, and SIGKILL needs no controlled shutdown.
		if out, err := p.sh.try("kill", "kafka"); err != nil {
			t.Errorf("killing the private broker: %v\n%s", err, out)
		}
		_ = os.RemoveAll(dir)
	})
	d := stopwatch(p.Start)
	t.Logf("private kafka %s ready in %s (dir %s)", p.Brokers()[0], d, dir)
	return p
}

// Brokers returns the PLAINTEXT listener's address.
func (p *PrivateKafka) Brokers() []string {
	return []string{net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port))}
}

// Start starts the broker (again, on the same data and ports) and waits until it is ready, coordinators
// included. It is a no-op on a running, ready broker.
func (p *PrivateKafka) Start() { p.t.Helper(); p.sh.run(p.t, "up", "kafka") }

// Stop stops the broker with SIGTERM (a controlled shutdown) and waits until it has exited; SIGKILL after 20 s.
func (p *PrivateKafka) Stop() { p.t.Helper(); p.sh.run(p.t, "down", "kafka") }

// Kill SIGKILLs the broker and returns once the process is gone.
func (p *PrivateKafka) Kill() { p.t.Helper(); p.sh.run(p.t, "kill", "kafka") }

// PID is the broker JVM's process id (0 when it is not running), for a benchmark to read its CPU from /proc.
func (p *PrivateKafka) PID() int { return readPID(filepath.Join(p.Dir, "kafka.pid")) }

// LogFile is the broker's server.log, for a test to print when something goes wrong.
func (p *PrivateKafka) LogFile() string { return filepath.Join(p.Dir, "logs", "server.log") }

// Client returns a client of the PLAINTEXT listener with opts, closed when the test ends.
func (p *PrivateKafka) Client(opts ...kgo.Opt) *kgo.Client {
	p.t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(p.Brokers()...)}, opts...)...)
	if err != nil {
		p.t.Fatalf("kafka client: %v", err)
	}
	p.t.Cleanup(cl.Close)
	return cl
}

func readPID(file string) int {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

func writeConfigFile(t testing.TB, name, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

// removeAbandoned removes private broker directories whose test binary is gone and whose broker no longer runs
// (a test killed before its cleanup; the watchdog has killed the broker).
func removeAbandoned(root string) {
	dirs, _ := filepath.Glob(filepath.Join(root, "kafka-*"))
	for _, dir := range dirs {
		owner, err := os.ReadFile(filepath.Join(dir, "owner.pid"))
		if err != nil {
			continue // being created
		}
		if pid, err := strconv.Atoi(string(owner)); err != nil || pidAlive(pid, "") {
			continue
		}
		conf := filepath.Join(dir, "config", "server.properties")
		if b, err := os.ReadFile(filepath.Join(dir, "kafka.pid")); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pidAlive(pid, conf) {
				continue
			}
		}
		_ = os.RemoveAll(dir)
	}
}

// pollUntil polls cond every 100 ms until it returns nil or timeout passes, and returns its last error.
func pollUntil(ctx context.Context, timeout time.Duration, cond func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		err := cond(ctx)
		if err == nil || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}
