package rules

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	srules "github.com/signalstage/signalstage/schemas/rules"
)

// ErrUsage means the command line was wrong; the binary should print the message and exit 2.
var ErrUsage = errors.New("usage")

// ErrNotFound means the rule named does not exist.
var ErrNotFound = errors.New("rule not found")

// Usage is the help text of the rules command.
const Usage = `usage: processor rules <verb> [flags] [args]
  list   [-tenant T] [-o table|yaml|json]     rules in effect (all tenants unless -tenant)
  get    [-tenant T] [-o yaml|json] ID        one rule (ID may be tenant/id)
  apply  [-tenant T] FILE|-                   validate and apply the rules of a JSON or YAML file
  delete [-tenant T] ID                       delete a rule (ID may be tenant/id)
  suggest [-tenant T] [-o yaml|json] [FILE|-] draft a rule from a sample payload or signal queue row`

// CommandConfig is what the rules command needs from the binary's flags.
type CommandConfig struct {
	// Brokers to bootstrap from (required).
	Brokers []string
	// Topic is the full name of the rules topic (required).
	Topic string
	// ClientOpts are added to every Kafka client the command makes.
	ClientOpts []kgo.Opt
	// Timeout bounds each verb (default 30s).
	Timeout time.Duration
	// Env, when set, sets the verb's flags the command line did not give from the environment (the binary's
	// rule, schemas/envflag); its error is a usage error.
	Env func(*flag.FlagSet) error
}

// Command runs `processor rules <verb> ...`: args start with the verb. Input files are read from disk, or
// stdin for "-" (and for suggest without a file); output goes to stdout.
func Command(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer, cfg CommandConfig) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: no verb\n%s", ErrUsage, Usage)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	verb := args[0]
	fs := flag.NewFlagSet("rules "+verb, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	tenant := fs.String("tenant", "", "tenant of the rules")
	output := fs.String("o", "", "output format: table, yaml or json")
	pos, err := parseInterleaved(fs, args[1:])
	if err == nil && cfg.Env != nil {
		err = cfg.Env(fs)
	}
	if err != nil {
		return fmt.Errorf("%w: %v\n%s", ErrUsage, err, Usage)
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	arg := func(i int) string {
		if i < len(pos) {
			return pos[i]
		}
		return ""
	}
	switch verb {
	case "list":
		if *output == "" {
			*output = "table"
		}
		s, err := snapshot(ctx, cfg)
		if err != nil {
			return err
		}
		var rs []Rule
		for _, t := range s.Tenants() {
			if *tenant == "" || t == *tenant {
				rs = append(rs, s.Rules(t)...)
			}
		}
		return writeRules(stdout, rs, *output, false)
	case "get":
		t, id, err := ruleRef(*tenant, arg(0))
		if err != nil {
			return err
		}
		s, err := snapshot(ctx, cfg)
		if err != nil {
			return err
		}
		r, ok := s.Rule(t, id)
		if !ok {
			return fmt.Errorf("%w: %s/%s", ErrNotFound, t, id)
		}
		return writeRules(stdout, []Rule{r}, *output, true)
	case "apply":
		data, err := readInput(arg(0), stdin, false)
		if err != nil {
			return err
		}
		rs, err := Parse(data)
		if err != nil {
			return err
		}
		for i := range rs {
			if rs[i].Tenant == "" {
				rs[i].Tenant = *tenant
			} else if *tenant != "" && rs[i].Tenant != *tenant {
				return fmt.Errorf("rule %s: tenant %q is not -tenant %q", rs[i].ID, rs[i].Tenant, *tenant)
			}
		}
		cl, err := newClient(cfg)
		if err != nil {
			return err
		}
		defer cl.Close()
		if err := NewPublisher(cl, cfg.Topic).Apply(ctx, rs...); err != nil {
			return err
		}
		for _, r := range rs {
			fmt.Fprintf(stdout, "applied %s/%s\n", r.Tenant, r.ID)
		}
		return nil
	case "delete":
		t, id, err := ruleRef(*tenant, arg(0))
		if err != nil {
			return err
		}
		s, err := snapshot(ctx, cfg)
		if err != nil {
			return err
		}
		if _, ok := s.Rule(t, id); !ok {
			return fmt.Errorf("%w: %s/%s", ErrNotFound, t, id)
		}
		cl, err := newClient(cfg)
		if err != nil {
			return err
		}
		defer cl.Close()
		if err := NewPublisher(cl, cfg.Topic).Delete(ctx, t, id); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "deleted %s/%s\n", t, id)
		return nil
	case "suggest":
		data, err := readInput(arg(0), stdin, true)
		if err != nil {
			return err
		}
		sg, err := Suggest(data, *tenant)
		if err != nil {
			return err
		}
		if *output == "json" {
			return writeJSON(stdout, sg)
		}
		y, err := sg.YAML()
		if err != nil {
			return err
		}
		_, err = stdout.Write(y)
		return err
	}
	return fmt.Errorf("%w: unknown verb %q\n%s", ErrUsage, verb, Usage)
}

// parseInterleaved parses flags anywhere among the positional arguments (flag stops at the first positional).
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// ruleRef resolves "id" with -tenant, or "tenant/id".
func ruleRef(tenant, ref string) (string, string, error) {
	if ref == "" {
		return "", "", fmt.Errorf("%w: missing rule id\n%s", ErrUsage, Usage)
	}
	if t, id, ok := strings.Cut(ref, "/"); ok {
		return t, id, nil
	}
	if tenant == "" {
		return "", "", fmt.Errorf("%w: rule %q needs -tenant or the form tenant/id", ErrUsage, ref)
	}
	return tenant, ref, nil
}

func readInput(name string, stdin io.Reader, stdinDefault bool) ([]byte, error) {
	if name == "" && !stdinDefault {
		return nil, fmt.Errorf("%w: missing FILE (use - for stdin)\n%s", ErrUsage, Usage)
	}
	if name == "" || name == "-" {
		b, err := io.ReadAll(io.LimitReader(stdin, srules.MaxFileSize+1))
		if err != nil {
			return nil, fmt.Errorf("reading stdin: %w", err)
		}
		return b, nil
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("reading rules file: %w", err)
	}
	return b, nil
}

func snapshot(ctx context.Context, cfg CommandConfig) (*Set, error) {
	return Snapshot(ctx, WatcherConfig{Brokers: cfg.Brokers, Topic: cfg.Topic, ClientOpts: cfg.ClientOpts,
		Logger: slog.New(slog.DiscardHandler)})
}

func newClient(cfg CommandConfig) (*kgo.Client, error) {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(cfg.Brokers...)}, cfg.ClientOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("creating kafka client: %w", err)
	}
	return cl, nil
}

func writeRules(w io.Writer, rs []Rule, format string, single bool) error {
	switch format {
	case "json":
		if single {
			return writeJSON(w, rs[0])
		}
		if rs == nil {
			rs = []Rule{}
		}
		return writeJSON(w, rs)
	case "", "yaml":
		if len(rs) == 0 {
			_, err := io.WriteString(w, "[]\n")
			return err
		}
		var v any = rs
		if single {
			v = rs[0]
		}
		y, err := srules.EncodeYAMLValue(v)
		if err != nil {
			return err
		}
		_, err = w.Write(y)
		return err
	case "table":
		tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "TENANT\tID\tPRIORITY\tENABLED\tSOURCE\tTYPE\tEVENT\tURL\tCONDITIONS\tSIGNAL")
		for _, r := range rs {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%v\t%s\t%s\t%s\t%s\t%d\t%s\n", r.Tenant, r.ID, r.Priority, r.Enabled,
				dash(r.Match.Source), dash(r.Match.Type), dash(r.Match.Event), dash(r.Match.URL), len(r.Match.Conditions), dash(r.Signal))
		}
		return tw.Flush()
	}
	return fmt.Errorf("%w: unknown output format %q", ErrUsage, format)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
