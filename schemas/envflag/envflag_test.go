package envflag

import (
	"bytes"
	"errors"
	"flag"
	"strings"
	"testing"
	"time"
)

func newSet() (*flag.FlagSet, *int, *time.Duration, *string, *bool) {
	fs := flag.NewFlagSet("sink", flag.ContinueOnError)
	fs.SetOutput(new(bytes.Buffer))
	n := fs.Int("flush-rows", 10, "rows per batch")
	d := fs.Duration("retry-max", time.Second, "longest wait")
	s := fs.String("wait-for", "x", "something with a legacy name")
	b := fs.Bool("dry-run", false, "send nothing")
	return fs, n, d, s, b
}

// TestRule: the stage's variable, else the shared one, else a legacy name; the command line wins over all.
func TestRule(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		rows int
		wait string
	}{
		{"defaults", nil, nil, 10, "x"},
		{"stage", map[string]string{"SIGNALSTAGE_SINK_FLUSH_ROWS": "7"}, nil, 7, "x"},
		{"shared", map[string]string{"SIGNALSTAGE_FLUSH_ROWS": "8"}, nil, 8, "x"},
		{"stage-over-shared", map[string]string{"SIGNALSTAGE_SINK_FLUSH_ROWS": "7", "SIGNALSTAGE_FLUSH_ROWS": "8"}, nil, 7, "x"},
		{"command-line-wins", map[string]string{"SIGNALSTAGE_SINK_FLUSH_ROWS": "7"}, []string{"-flush-rows", "3"}, 3, "x"},
		{"empty-is-unset", map[string]string{"SIGNALSTAGE_SINK_FLUSH_ROWS": "", "SIGNALSTAGE_FLUSH_ROWS": "8"}, nil, 8, "x"},
		{"legacy", map[string]string{"OLD_WAIT": "y"}, nil, 10, "y"},
		{"rule-over-legacy", map[string]string{"OLD_WAIT": "y", "SIGNALSTAGE_WAIT_FOR": "z"}, nil, 10, "z"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, v := range []string{"SIGNALSTAGE_SINK_FLUSH_ROWS", "SIGNALSTAGE_FLUSH_ROWS", "OLD_WAIT", "SIGNALSTAGE_WAIT_FOR", "SIGNALSTAGE_SINK_WAIT_FOR"} {
				t.Setenv(v, "")
			}
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			fs, n, _, s, _ := newSet()
			if err := Parse(fs, "sink", tc.args, Legacy("wait-for", "OLD_WAIT")); err != nil {
				t.Fatal(err)
			}
			if *n != tc.rows || *s != tc.wait {
				t.Errorf("flush-rows=%d wait-for=%q, want %d %q", *n, *s, tc.rows, tc.wait)
			}
		})
	}
}

// TestBadValue: a value the flag refuses is an *Error naming the variable, the flag and what it reads.
func TestBadValue(t *testing.T) {
	for _, tc := range []struct{ env, val, want string }{
		{"SIGNALSTAGE_SINK_FLUSH_ROWS", "many", `SIGNALSTAGE_SINK_FLUSH_ROWS="many" is not an integer (flag -flush-rows)`},
		{"SIGNALSTAGE_RETRY_MAX", "ten", `SIGNALSTAGE_RETRY_MAX="ten" is not a duration (such as 30s or 5m) (flag -retry-max)`},
		{"SIGNALSTAGE_SINK_DRY_RUN", "yes please", `SIGNALSTAGE_SINK_DRY_RUN="yes please" is not true or false (flag -dry-run)`},
	} {
		t.Setenv(tc.env, tc.val)
		fs, _, _, _, _ := newSet()
		err := Parse(fs, "sink", nil)
		var e *Error
		if !errors.As(err, &e) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one saying %s", tc.env, err, tc.want)
		}
		t.Setenv(tc.env, "")
	}
	// A bad variable of a flag given on the command line is never read.
	t.Setenv("SIGNALSTAGE_SINK_FLUSH_ROWS", "many")
	fs, n, _, _, _ := newSet()
	if err := Parse(fs, "sink", []string{"-flush-rows=4"}); err != nil || *n != 4 {
		t.Errorf("Parse = %v, flush-rows %d", err, *n)
	}
}

// TestUsage: -h lists every flag's variables and never what the environment holds.
func TestUsage(t *testing.T) {
	t.Setenv("SIGNALSTAGE_SINK_WAIT_FOR", "value-from-the-environment")
	fs, _, _, _, _ := newSet()
	var out bytes.Buffer
	fs.SetOutput(&out)
	if err := Parse(fs, "sink", []string{"-h"}, Legacy("wait-for", "OLD_WAIT")); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("Parse(-h) = %v", err)
	}
	for _, want := range []string{"[env SIGNALSTAGE_SINK_FLUSH_ROWS, SIGNALSTAGE_FLUSH_ROWS]",
		"[env SIGNALSTAGE_SINK_RETRY_MAX, SIGNALSTAGE_RETRY_MAX]", "[env SIGNALSTAGE_SINK_WAIT_FOR, SIGNALSTAGE_WAIT_FOR, OLD_WAIT]"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("-h does not say %s:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "value-from-the-environment") {
		t.Errorf("-h shows a value from the environment:\n%s", out.String())
	}
}
