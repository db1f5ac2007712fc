// Package kafkaconn is how every signalstage binary connects to a secured Kafka (and the sink to a secured
// ClickHouse): TLS with a CA, an optional client certificate and a server name, SASL PLAIN, SCRAM-SHA-256 and
// SCRAM-SHA-512, with the flags and variables registered once here for ingest, processor and sink. Secrets come
// from the environment or a file, never from a flag (see Secret).
//
//	var kc kafkaconn.Flags
//	kc.Register(fs)        // -kafka-tls..., -kafka-sasl-..., each with its SIGNALSTAGE_KAFKA_... variable
//	fs.Parse(args)
//	opts, err := kc.Opts() // kgo.DialTLSConfig and kgo.SASL; nil for a plaintext broker
package kafkaconn

import (
	"errors"
	"flag"
	"fmt"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// SASL mechanisms (-kafka-sasl-mechanism).
const (
	MechanismPlain       = "PLAIN"
	MechanismScramSHA256 = "SCRAM-SHA-256"
	MechanismScramSHA512 = "SCRAM-SHA-512"
)

// EnvSASLPassword holds the SASL password itself (a secret: never a flag). The other settings are flags, read
// from the environment by the binaries' one rule (schemas/envflag: -kafka-sasl-user is SIGNALSTAGE_KAFKA_SASL_USER
// for every stage, SIGNALSTAGE_<STAGE>_KAFKA_SASL_USER for one).
const EnvSASLPassword = "SIGNALSTAGE_KAFKA_SASL_PASSWORD"

// Flags are a Kafka client's security settings. The zero value is a plaintext client without SASL.
type Flags struct {
	TLS *TLS
	// Mechanism is "", PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (-kafka-sasl-mechanism).
	Mechanism string
	// User is the SASL user (-kafka-sasl-user).
	User string
	// Password is the SASL password: env SIGNALSTAGE_KAFKA_SASL_PASSWORD or -kafka-sasl-password-file.
	Password *Secret
}

// Register adds the Kafka security flags to fs (their variables come from schemas/envflag's rule).
func (f *Flags) Register(fs *flag.FlagSet) {
	f.TLS = RegisterTLS(fs, "kafka-tls", "Kafka", true)
	fs.StringVar(&f.Mechanism, "kafka-sasl-mechanism", "", "SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; empty: no SASL")
	fs.StringVar(&f.User, "kafka-sasl-user", "", "SASL user")
	f.Password = RegisterSecret(fs, "kafka-sasl-password", EnvSASLPassword, "SASL password")
}

// Opts returns the client options of the settings: kgo.DialTLSConfig with TLS, kgo.SASL with a mechanism. It
// validates once and names the flag of a bad setting.
func (f *Flags) Opts() ([]kgo.Opt, error) {
	var opts []kgo.Opt
	tc, err := f.TLS.Config()
	if err != nil {
		return nil, err
	}
	if tc != nil {
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	m, err := f.mechanism()
	if err != nil {
		return nil, err
	}
	if m != nil {
		opts = append(opts, kgo.SASL(m))
	}
	return opts, nil
}

func (f *Flags) mechanism() (sasl.Mechanism, error) {
	pass, err := f.Password.Value()
	if err != nil {
		return nil, err
	}
	mech := strings.ToUpper(strings.TrimSpace(f.Mechanism))
	if mech == "" {
		if f.User != "" || pass != "" {
			return nil, errors.New("-kafka-sasl-mechanism: a SASL user or password is set but no mechanism (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)")
		}
		return nil, nil
	}
	if f.User == "" {
		return nil, fmt.Errorf("-kafka-sasl-user: required with -kafka-sasl-mechanism %s", mech)
	}
	if pass == "" {
		return nil, fmt.Errorf("-kafka-sasl-password-file: a password is required with -kafka-sasl-mechanism %s (env %s or the file)", mech, EnvSASLPassword)
	}
	switch mech {
	case MechanismPlain:
		return plain.Auth{User: f.User, Pass: pass}.AsMechanism(), nil
	case MechanismScramSHA256:
		return scram.Auth{User: f.User, Pass: pass}.AsSha256Mechanism(), nil
	case MechanismScramSHA512:
		return scram.Auth{User: f.User, Pass: pass}.AsSha512Mechanism(), nil
	}
	return nil, fmt.Errorf("-kafka-sasl-mechanism: %q is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", f.Mechanism)
}

// ErrAuthentication is wrapped by Explain around an error the broker returned for refused credentials.
var ErrAuthentication = errors.New("kafka refused the SASL credentials (check -kafka-sasl-user, -kafka-sasl-mechanism and the password in " +
	EnvSASLPassword + " or -kafka-sasl-password-file)")

// Explain wraps err with ErrAuthentication when Kafka refused the client's credentials, so that the operator reads
// what to fix rather than a bare protocol error; other errors are returned as they are.
func Explain(err error) error {
	if errors.Is(err, kerr.SaslAuthenticationFailed) || errors.Is(err, kerr.IllegalSaslState) ||
		errors.Is(err, kerr.UnsupportedSaslMechanism) {
		return fmt.Errorf("%w: %w", ErrAuthentication, err)
	}
	return err
}
