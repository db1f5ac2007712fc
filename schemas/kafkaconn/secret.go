package kafkaconn

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
)

// Secret is a credential read from the environment or from a file, never from a flag's value: a flag's value is
// visible to every user of the host in the process list and lands in shell histories. Env names the variable
// that holds the secret itself (SIGNALSTAGE_KAFKA_SASL_PASSWORD); the flag -<name>-file and the variable
// <Env>_FILE name a file holding it instead (a mounted Kubernetes Secret), whose trailing newline is dropped.
//
// Secret's String never prints the value, so a Secret can be logged or formatted by accident without leaking.
type Secret struct {
	// Env is the variable holding the secret.
	Env string
	// File is the file holding it (flag -<name>-file, env <Env>_FILE).
	File string
	// Flag is the file flag's name, for error messages.
	Flag string
}

// RegisterSecret registers -<name>-file on fs and returns the Secret it fills. what says what the secret is, for
// -h. The file flag is read from the environment like every flag (schemas/envflag); pass env as
// SIGNALSTAGE_<NAME> (or SIGNALSTAGE_<STAGE>_<NAME>) so that <env>_FILE is one of the file flag's variables.
func RegisterSecret(fs *flag.FlagSet, name, env, what string) *Secret {
	s := &Secret{Env: env, Flag: name + "-file"}
	fs.StringVar(&s.File, s.Flag, "", fmt.Sprintf("file holding the %s (or the value itself in env %s, never a flag)", what, env))
	return s
}

// ErrSecretTwice is returned when a secret is given both in its variable and in a file.
var ErrSecretTwice = errors.New("given both in the environment and in a file")

// Value returns the secret: the variable's value, else the file's contents, else "". Giving both is an error, as
// is a file that cannot be read.
func (s *Secret) Value() (string, error) {
	if s == nil {
		return "", nil
	}
	v, inEnv := os.LookupEnv(s.Env)
	if inEnv && v != "" && s.File != "" {
		return "", fmt.Errorf("%s and -%s (%s_FILE): %w", s.Env, s.Flag, s.Env, ErrSecretTwice)
	}
	if s.File == "" {
		return v, nil
	}
	b, err := os.ReadFile(s.File)
	if err != nil {
		// The error names the file, not its contents.
		return "", fmt.Errorf("-%s: %w", s.Flag, err)
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// String says where the secret comes from, never what it is.
func (s *Secret) String() string {
	if s == nil {
		return "none"
	}
	if s.File != "" {
		return "file " + s.File
	}
	if os.Getenv(s.Env) != "" {
		return "env " + s.Env
	}
	return "none"
}
