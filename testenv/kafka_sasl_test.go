package testenv

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

var allSASLMechanisms = []string{MechanismPlain, MechanismScramSHA256, MechanismScramSHA512}

// TestPrivateKafkaSASLSSL proves the private broker's SASL_SSL listener is real: a franz-go client produces and
// consumes over TLS with each of PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512, and is refused in plaintext, over TLS
// without SASL, with a wrong password for each mechanism, and when it does not trust the test CA. With
// WithClientCertificates a client without a certificate is refused too; without it, one is accepted.
func TestPrivateKafkaSASLSSL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opt  PrivateKafkaOption
	}{
		{"sasl", WithSASLSSL()},
		{"sasl-and-client-certificates", WithClientCertificates()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // two broker starts overlap
			p := NewPrivateKafka(t, tc.opt)
			sec := p.Security
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()

			// Admin over SASL_SSL too: the topic is created through the secured listener.
			adm := kadm.NewClient(saslClient(t, sec, MechanismScramSHA512))
			const topic = "secured"
			if _, err := adm.CreateTopic(ctx, 1, 1, nil, topic); err != nil {
				t.Fatalf("creating a topic over SASL_SSL: %v", err)
			}
			for _, mech := range allSASLMechanisms {
				cl := saslClient(t, sec, mech, kgo.DefaultProduceTopic(topic))
				if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte(mech)}).FirstErr(); err != nil {
					t.Fatalf("producing with %s: %v", mech, err)
				}
			}
			for _, mech := range allSASLMechanisms {
				got := consumeSASL(ctx, t, sec, mech, topic, len(allSASLMechanisms))
				for i, want := range allSASLMechanisms {
					if got[i] != want {
						t.Fatalf("consuming with %s: read %q, want %q", mech, got, allSASLMechanisms)
					}
				}
			}

			refused := func(what string, opts ...kgo.Opt) error {
				t.Helper()
				err := metadataWithOpts(opts...)
				if err == nil {
					t.Fatalf("%s: the SASL_SSL listener answered", what)
				}
				t.Logf("%s: refused: %v", what, err)
				return err
			}
			sasl := kgo.SASL(sec.Mechanism(MechanismPlain, sec.User, sec.Password))
			refused("plaintext client with SASL", kgo.SeedBrokers(sec.Addr), sasl)
			refused("TLS client without SASL", kgo.SeedBrokers(sec.Addr), kgo.DialTLSConfig(sec.TLSConfig()))
			for _, mech := range allSASLMechanisms {
				err := refused("wrong password with "+mech, kgo.SeedBrokers(sec.Addr), kgo.DialTLSConfig(sec.TLSConfig()),
					kgo.SASL(sec.Mechanism(mech, sec.User, sec.Password+"x")))
				if !errors.Is(err, kerr.SaslAuthenticationFailed) {
					t.Fatalf("wrong password with %s: %v, want SASL_AUTHENTICATION_FAILED", mech, err)
				}
			}
			err := refused("client that does not trust the test CA", kgo.SeedBrokers(sec.Addr), sasl,
				kgo.DialTLSConfig(&tls.Config{MinVersion: tls.VersionTLS12}))
			if !errors.As(err, new(x509.UnknownAuthorityError)) {
				t.Fatalf("client that does not trust the test CA: %v, want an unknown-authority error", err)
			}

			noCert := sec.TLSConfig()
			noCert.Certificates = nil
			err = metadataWithOpts(kgo.SeedBrokers(sec.Addr), kgo.DialTLSConfig(noCert), sasl)
			switch {
			case sec.ClientCertRequired && err == nil:
				t.Fatal("TLS client without a certificate: accepted by a listener that requires one")
			case !sec.ClientCertRequired && err != nil:
				t.Fatalf("TLS client without a certificate: refused by a listener that does not require one: %v", err)
			case err != nil:
				t.Logf("TLS client without a certificate: refused: %v", err)
			}
		})
	}
}

func saslClient(t testing.TB, sec *KafkaSecurity, mech string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append(sec.ClientOpts(mech), opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// consumeSASL reads n values of topic from the start over SASL_SSL with mech.
func consumeSASL(ctx context.Context, t testing.TB, sec *KafkaSecurity, mech, topic string, n int) []string {
	t.Helper()
	cl := saslClient(t, sec, mech, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var got []string
	for len(got) < n && ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		fs.EachError(func(tp string, p int32, err error) {
			if ctx.Err() == nil {
				t.Fatalf("consuming with %s: %s/%d: %v", mech, tp, p, err)
			}
		})
		fs.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
	}
	return got
}

// metadataWithOpts makes a client with opts and returns the error of one metadata request (nil if it is answered).
func metadataWithOpts(opts ...kgo.Opt) error {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.DialTimeout(2 * time.Second), kgo.RequestRetries(1)}, opts...)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = kadm.NewClient(cl).BrokerMetadata(ctx)
	return err
}
