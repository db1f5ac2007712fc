// Package envflag gives every flag of a signalstage binary an environment variable, by one rule for ingest,
// processor and sink, so that a flag added later has its variable without more code:
//
//	-<flag> of <stage>   SIGNALSTAGE_<STAGE>_<FLAG>, else SIGNALSTAGE_<FLAG>
//
// with <FLAG> the flag's name upper-cased, '-' and '.' as '_' (sink -flush-rows: SIGNALSTAGE_SINK_FLUSH_ROWS, else
// SIGNALSTAGE_FLUSH_ROWS). The stage's variable wins over the shared one, so one ConfigMap can hold what every
// stage shares (SIGNALSTAGE_KAFKA_TLS, SIGNALSTAGE_TOPIC_PREFIX) and a stage can still be told apart. A verb's
// flags follow the same rule (sink redrive -limit: SIGNALSTAGE_SINK_LIMIT). Names older releases documented that
// do not fit the rule are kept with Legacy, read last.
//
// A flag given on the command line wins over every variable. An empty variable counts as unset. A value the flag
// refuses is an *Error naming the variable and the flag (the binaries exit 2 on it, as for a bad flag). -h shows
// each flag's variables; the values are applied after the command line is parsed, so -h never shows what the
// environment holds. Secrets are not flags at all: see schemas/kafkaconn's Secret.
//
//	fs := flag.NewFlagSet("sink", flag.ContinueOnError)
//	... register flags with their built-in defaults ...
//	err := envflag.Parse(fs, "sink", os.Args[1:], envflag.Legacy("keys", "SIGNALSTAGE_KEYS_FILE"))
package envflag

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"
)

// Prefix starts every variable.
const Prefix = "SIGNALSTAGE"

var nameToEnv = strings.NewReplacer("-", "_", ".", "_")

// Variables returns the variables flag name of stage reads, in the order they are looked up.
func Variables(stage, name string, legacy ...string) []string {
	f := strings.ToUpper(nameToEnv.Replace(name))
	vars := []string{Prefix + "_" + strings.ToUpper(nameToEnv.Replace(stage)) + "_" + f, Prefix + "_" + f}
	for _, l := range legacy {
		if l != vars[0] && l != vars[1] {
			vars = append(vars, l)
		}
	}
	return vars
}

// Option changes how Parse reads the environment.
type Option func(*options)

type options struct {
	legacy map[string][]string
}

// Legacy keeps variables an older release documented for flag name, read after the rule's two names (existing
// deployments keep working; new ones should use the rule).
func Legacy(name string, vars ...string) Option {
	return func(o *options) { o.legacy[name] = append(o.legacy[name], vars...) }
}

// Error is a variable whose value the flag refuses.
type Error struct {
	Var, Value, Flag string
	// Want says what the flag reads ("an integer"), when known.
	Want string
	Err  error
}

func (e *Error) Error() string {
	want := e.Want
	if want == "" {
		want = "a valid value"
	}
	return fmt.Sprintf("%s=%q is not %s (flag -%s): %v", e.Var, e.Value, want, e.Flag, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Parse annotates each flag's usage with its variables, parses args into fs (with fs's error handling: an
// ExitOnError set exits on -h or a bad flag), then sets every flag the command line did not from the first of
// its variables that is not empty. The first value a flag refuses is returned as an *Error.
func Parse(fs *flag.FlagSet, stage string, args []string, opts ...Option) error {
	vars := variables(fs, stage, opts)
	fs.VisitAll(func(f *flag.Flag) {
		f.Usage = strings.TrimSpace(f.Usage) + " [env " + strings.Join(vars[f.Name], ", ") + "]"
	})
	if err := fs.Parse(args); err != nil {
		return err
	}
	return apply(fs, vars)
}

// Apply sets every flag of an already parsed fs that the command line did not set from its variables, as Parse
// does (for a flag set parsed in pieces, such as flags among positional arguments).
func Apply(fs *flag.FlagSet, stage string, opts ...Option) error {
	return apply(fs, variables(fs, stage, opts))
}

// variables maps each flag of fs to its variables.
func variables(fs *flag.FlagSet, stage string, opts []Option) map[string][]string {
	o := options{legacy: map[string][]string{}}
	for _, opt := range opts {
		opt(&o)
	}
	vars := map[string][]string{}
	fs.VisitAll(func(f *flag.Flag) { vars[f.Name] = Variables(stage, f.Name, o.legacy[f.Name]...) })
	return vars
}

func apply(fs *flag.FlagSet, vars map[string][]string) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || given[f.Name] {
			return
		}
		for _, v := range vars[f.Name] {
			val := os.Getenv(v)
			if val == "" {
				continue
			}
			if serr := fs.Set(f.Name, boolWord(f, val)); serr != nil {
				err = &Error{Var: v, Value: val, Flag: f.Name, Want: want(f), Err: serr}
			}
			return
		}
	})
	return err
}

// boolWord keeps the words the older variables took for a bool (SIGNALSTAGE_KAFKA_TLS=yes).
func boolWord(f *flag.Flag, val string) string {
	if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
		switch strings.ToLower(val) {
		case "yes", "on":
			return "true"
		case "no", "off":
			return "false"
		}
	}
	return val
}

// want says what a flag of a standard type reads, for error messages.
func want(f *flag.Flag) string {
	g, ok := f.Value.(flag.Getter)
	if !ok {
		return ""
	}
	switch g.Get().(type) {
	case time.Duration:
		return "a duration (such as 30s or 5m)"
	case int, int64, uint, uint64:
		return "an integer"
	case float64:
		return "a number"
	case bool:
		return "true or false"
	}
	return ""
}
