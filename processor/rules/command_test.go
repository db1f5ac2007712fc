package rules

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/testenv"
)

const demoSample = `{"type":"track","event":"Form Submitted","anonymousId":"anon-1","messageId":"m-1",
 "properties":{"form_name":"demo","email":"Jane@Example.com"},"traits":{"company":"Example Inc"}}`

// The flow of the signal queue: suggest a draft from a sample, edit the signal name, apply, and the rule maps
// demo form submissions (and not other forms) on a running watcher; then list, get and delete it.
func TestCommandSuggestApplyListGetDelete(t *testing.T) {
	k := testenv.NewKafka(t, 1)
	cfg := CommandConfig{Brokers: k.Brokers, Topic: k.Topic(schemas.TopicRules)}
	ctx := context.Background()
	run := func(stdin string, args ...string) (string, error) {
		var out bytes.Buffer
		err := Command(ctx, args, strings.NewReader(stdin), &out, cfg)
		return out.String(), err
	}
	w := startWatcher(t, k)

	draft, err := run(demoSample, "suggest", "-tenant", "acme")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"form_name", "value: demo", "email: properties.email", "company: traits.company", "event: Form Submitted"} {
		if !strings.Contains(draft, want) {
			t.Fatalf("draft lacks %q:\n%s", want, draft)
		}
	}
	edited := strings.Replace(draft, "signal: Form Submitted", "signal: Demo Requested", 1)
	file := filepath.Join(t.TempDir(), "demo.yaml")
	if err := os.WriteFile(file, []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := run("", "apply", file); err != nil || out != "applied acme/form-submitted\n" {
		t.Fatalf("apply: %q, %v", out, err)
	}

	demo := &Event{Source: "segment", Type: "track", Name: "Form Submitted", Payload: payload(t, demoSample)}
	contact := &Event{Source: "segment", Type: "track", Name: "Form Submitted",
		Payload: payload(t, strings.Replace(demoSample, `"demo"`, `"contact"`, 1))}
	eventually(t, "applied rule maps the demo form", func() bool {
		got, ok := w.Set().Match("acme", demo)
		return ok && got.Signal == "Demo Requested" && got.Email == "jane@example.com" && got.Fields["company"] == "Example Inc"
	})
	if _, ok := w.Set().Match("acme", contact); ok {
		t.Fatal("the rule maps another form")
	}

	out, err := run("", "list", "-tenant", "acme")
	if err != nil || !strings.Contains(out, "form-submitted") || !strings.Contains(out, "Demo Requested") {
		t.Fatalf("list: %v\n%s", err, out)
	}
	out, err = run("", "get", "acme/form-submitted", "-o", "json")
	var got Rule
	if err != nil || json.Unmarshal([]byte(out), &got) != nil || got.Signal != "Demo Requested" || got.UpdatedAt.IsZero() {
		t.Fatalf("get: %v\n%s", err, out)
	}
	if _, err := run("", "delete", "-tenant", "acme", "form-submitted"); err != nil {
		t.Fatal(err)
	}
	if _, err := run("", "get", "-tenant", "acme", "form-submitted"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get after delete: %v", err)
	}
	if _, err := run("", "delete", "acme/form-submitted"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	eventually(t, "deleted rule stops applying", func() bool { _, ok := w.Set().Match("acme", demo); return !ok })
}

func TestCommandApplyRefusesInvalid(t *testing.T) {
	k := testenv.NewKafka(t, 1)
	cfg := CommandConfig{Brokers: k.Brokers, Topic: k.Topic(schemas.TopicRules)}
	doc := `[{"tenant":"acme","id":"ok","match":{"event":"A"}},
	        {"tenant":"acme","id":"bad","match":{"conditions":[{"path":"properties..x","op":"eq","value":"1"}]}}]`
	var out bytes.Buffer
	err := Command(context.Background(), []string{"apply", "-"}, strings.NewReader(doc), &out, cfg)
	if !errors.Is(err, ErrBadPath) || !strings.Contains(err.Error(), "rule acme/bad: match.conditions[0].path") {
		t.Fatalf("apply = %v", err)
	}
	out.Reset()
	if err := Command(context.Background(), []string{"list", "-o", "json"}, nil, &out, cfg); err != nil || strings.TrimSpace(out.String()) != "[]" {
		t.Fatalf("a refused file wrote rules: %v %s", err, out.String())
	}
}

func TestCommandUsage(t *testing.T) {
	cfg := CommandConfig{Brokers: []string{"127.0.0.1:1"}, Topic: "x"}
	for _, args := range [][]string{nil, {"frobnicate"}, {"get"}, {"get", "no-tenant"}, {"apply"}, {"list", "-x"}} {
		if err := Command(context.Background(), args, strings.NewReader(""), &bytes.Buffer{}, cfg); !errors.Is(err, ErrUsage) {
			t.Errorf("Command(%q) = %v, want ErrUsage", args, err)
		}
	}
}
