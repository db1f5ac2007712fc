package kafkaconn

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/signalstage/signalstage/schemas/envflag"
)

func parse(t *testing.T, args ...string) (*Flags, *flag.FlagSet) {
	t.Helper()
	var f Flags
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	f.Register(fs)
	// As the binaries parse: the command line, then the variables (schemas/envflag).
	if err := envflag.Parse(fs, "test", args); err != nil {
		t.Fatal(err)
	}
	return &f, fs
}

// TestSecretSources: the SASL password comes from its variable or a file (flag or <VAR>_FILE), both at once is
// refused, and neither the Secret's String nor -h shows it.
func TestSecretSources(t *testing.T) {
	const pass = "s3cret-value-nobody-prints"
	file := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(file, []byte(pass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Run("env", func(t *testing.T) {
		t.Setenv(EnvSASLPassword, pass)
		f, _ := parse(t)
		if v, err := f.Password.Value(); err != nil || v != pass {
			t.Fatalf("Value() = %q, %v", v, err)
		}
		if s := f.Password.String(); strings.Contains(s, pass) {
			t.Fatalf("String() shows the password: %s", s)
		}
	})
	t.Run("file-flag", func(t *testing.T) {
		f, _ := parse(t, "-kafka-sasl-password-file", file)
		if v, err := f.Password.Value(); err != nil || v != pass {
			t.Fatalf("Value() = %q, %v", v, err)
		}
	})
	t.Run("file-env", func(t *testing.T) {
		t.Setenv(EnvSASLPassword+"_FILE", file)
		f, fs := parse(t)
		if v, err := f.Password.Value(); err != nil || v != pass {
			t.Fatalf("Value() = %q, %v", v, err)
		}
		var help bytes.Buffer
		fs.SetOutput(&help)
		fs.PrintDefaults()
		if strings.Contains(help.String(), pass) {
			t.Fatal("-h shows the password")
		}
		for _, want := range []string{"-kafka-tls-ca-file", "SIGNALSTAGE_KAFKA_TLS_CA_FILE", "-kafka-sasl-mechanism",
			"SIGNALSTAGE_KAFKA_SASL_MECHANISM", "-kafka-sasl-user", "SIGNALSTAGE_KAFKA_SASL_USER", "-kafka-sasl-password-file", EnvSASLPassword + "_FILE",
			"-kafka-tls-cert-file", "-kafka-tls-key-file", "-kafka-tls-server-name"} {
			if !strings.Contains(help.String(), want) {
				t.Errorf("-h does not list %s", want)
			}
		}
	})
	t.Run("both", func(t *testing.T) {
		t.Setenv(EnvSASLPassword, pass)
		f, _ := parse(t, "-kafka-sasl-password-file", file)
		_, err := f.Password.Value()
		if !errors.Is(err, ErrSecretTwice) || strings.Contains(err.Error(), pass) {
			t.Fatalf("Value() error = %v, want ErrSecretTwice without the password", err)
		}
	})
	t.Run("no-flag-takes-the-value", func(t *testing.T) {
		var f Flags
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		fs.SetOutput(new(bytes.Buffer))
		f.Register(fs)
		if err := fs.Parse([]string{"-kafka-sasl-password", pass}); err == nil {
			t.Fatal("a -kafka-sasl-password flag exists: the password would be visible in the process list")
		}
	})
}

// TestOptsValidation: each incomplete or wrong setting is refused with the flag to fix; complete ones build.
func TestOptsValidation(t *testing.T) {
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		pass string
		opts int
		err  string
	}{
		{"plaintext", nil, "", 0, ""},
		{"tls-host-roots", []string{"-kafka-tls"}, "", 1, ""},
		{"plain", []string{"-kafka-sasl-mechanism", "plain", "-kafka-sasl-user", "u"}, "p", 1, ""},
		{"scram-256", []string{"-kafka-sasl-mechanism", "SCRAM-SHA-256", "-kafka-sasl-user", "u"}, "p", 1, ""},
		{"scram-512-tls", []string{"-kafka-tls", "-kafka-sasl-mechanism", "SCRAM-SHA-512", "-kafka-sasl-user", "u"}, "p", 2, ""},
		{"unknown-mechanism", []string{"-kafka-sasl-mechanism", "GSSAPI", "-kafka-sasl-user", "u"}, "p", 0, "-kafka-sasl-mechanism"},
		{"no-user", []string{"-kafka-sasl-mechanism", "PLAIN"}, "p", 0, "-kafka-sasl-user"},
		{"no-password", []string{"-kafka-sasl-mechanism", "PLAIN", "-kafka-sasl-user", "u"}, "", 0, "-kafka-sasl-password-file"},
		{"user-without-mechanism", []string{"-kafka-sasl-user", "u"}, "", 0, "-kafka-sasl-mechanism"},
		{"bad-ca", []string{"-kafka-tls-ca-file", ca}, "", 0, "-kafka-tls-ca-file"},
		{"missing-ca", []string{"-kafka-tls-ca-file", ca + ".missing"}, "", 0, "-kafka-tls-ca-file"},
		{"cert-without-key", []string{"-kafka-tls-cert-file", ca}, "", 0, "-kafka-tls-key-file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(EnvSASLPassword, tc.pass)
			f, _ := parse(t, tc.args...)
			opts, err := f.Opts()
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("Opts: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("Opts error = %v, want one naming %s", err, tc.err)
			case tc.err == "" && len(opts) != tc.opts:
				t.Fatalf("Opts returned %d options, want %d", len(opts), tc.opts)
			}
		})
	}
}
