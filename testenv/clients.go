package testenv

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Segment's own client libraries, run for real against a URL: @segment/analytics-node and
// segment-analytics-python as subprocesses (RunNodeClient, RunPythonClient), analytics.js in headless Chromium
// (RunBrowserClient, clients_browser.go). testenv/clients/install.sh installs them (`make clients`).

//go:embed clients/send-node.cjs clients/send-python.py
var clientScripts embed.FS

// EnvChromium names the Chromium binary; default /usr/bin/chromium (Debian's `chromium` package).
const EnvChromium = "SIGNALSTAGE_CHROMIUM"

// ErrClientsMissing is returned when the client libraries are not installed; run `make clients`.
var ErrClientsMissing = errors.New("segment client libraries not installed: run `make clients` (testenv/clients/install.sh)")

// ErrUndelivered is returned (wrapped) when a client ran but reported calls it could not deliver.
var ErrUndelivered = errors.New("client reported undelivered calls")

// Call is one scripted Segment call. Type is identify, track, page, screen, group or alias; the other fields
// are the call's arguments as the Segment spec names them, and each client maps them onto its own API.
type Call struct {
	Type        string         `json:"type"`
	UserID      string         `json:"userId,omitempty"`
	AnonymousID string         `json:"anonymousId,omitempty"`
	PreviousID  string         `json:"previousId,omitempty"`
	GroupID     string         `json:"groupId,omitempty"`
	Event       string         `json:"event,omitempty"`
	Name        string         `json:"name,omitempty"`
	Category    string         `json:"category,omitempty"`
	Traits      map[string]any `json:"traits,omitempty"`
	Properties  map[string]any `json:"properties,omitempty"`
	Context     map[string]any `json:"context,omitempty"`
	MessageID   string         `json:"messageId,omitempty"`
	// Timestamp is RFC 3339; empty lets the client stamp the call.
	Timestamp string `json:"timestamp,omitempty"`
}

// ScriptCalls returns the scripted session every client sends: an anonymous visitor (anonymousId anon) views a
// page and tracks an event, identifies with an email as userId user, then tracks, views a screen, joins a group
// and is aliased from the anonymous id. Names and values are fixed, so captured payloads compare across clients.
func ScriptCalls(anon, user string) []Call {
	return []Call{
		{Type: "page", AnonymousID: anon, Category: "Docs", Name: "Pricing",
			Properties: map[string]any{"url": "https://example.com/pricing", "path": "/pricing"}},
		{Type: "track", AnonymousID: anon, Event: "Demo Requested", Properties: map[string]any{"plan": "team", "seats": 12}},
		{Type: "identify", UserID: user, AnonymousID: anon,
			Traits: map[string]any{"email": "Ada.Lovelace@Example.com", "name": "Ada Lovelace", "company": "Analytical Engines", "title": "CTO"}},
		{Type: "track", UserID: user, AnonymousID: anon, Event: "Trial Started", Properties: map[string]any{"plan": "team"}},
		{Type: "screen", UserID: user, AnonymousID: anon, Category: "App", Name: "Dashboard", Properties: map[string]any{"tab": "overview"}},
		{Type: "group", UserID: user, AnonymousID: anon, GroupID: "acct-42", Traits: map[string]any{"name": "Analytical Engines", "employees": 120}},
		{Type: "alias", UserID: user, PreviousID: anon},
	}
}

// BatchCalls returns n track calls from one identified user, numbered in properties.n: enough calls to make a
// client send several batches when n exceeds its batch size.
func BatchCalls(user string, n int) []Call {
	calls := make([]Call, n)
	for i := range calls {
		calls[i] = Call{Type: "track", UserID: user, Event: "Feature Used", Properties: map[string]any{"n": i, "feature": "export"}}
	}
	return calls
}

// ClientConfig says what a client sends and where.
type ClientConfig struct {
	// BaseURL is the Tracking API base the client is pointed at, e.g. http://127.0.0.1:PORT (no /v1).
	BaseURL  string
	WriteKey string
	Calls    []Call
	// MaxRetries is passed to the library's own retry setting: analytics-node maxRetries and analytics-python
	// max_retries (retries after the first attempt), analytics.js httpConfig.backoffConfig.maxRetryCount (which
	// counts attempts, the first included, in its standard delivery). 0 means the library's default (10 for
	// each), negative means 0. analytics-go has no such setting.
	MaxRetries int
	// FlushAt is the number of events per batch request: 0 means the library's default (analytics-node 15,
	// analytics-python 100, analytics.js batching 10).
	FlushAt int
	// Gzip makes analytics-python gzip its bodies (the other clients cannot).
	Gzip bool
	// Timeout bounds the whole run; default 60 s.
	Timeout time.Duration
}

// ClientResult is what the client reported: calls it delivered and calls it gave up on, with its errors.
type ClientResult struct {
	Sent   int      `json:"sent"`
	Failed int      `json:"failed"`
	Errors []string `json:"errors"`
	// Output is the client's stderr, for diagnosis.
	Output string `json:"-"`
}

func (c ClientConfig) validate() error {
	if c.BaseURL == "" || c.WriteKey == "" {
		return errors.New("client config: BaseURL and WriteKey are required")
	}
	if len(c.Calls) == 0 {
		return errors.New("client config: no calls to send")
	}
	return nil
}

// scriptInput is the JSON the node and python scripts read on stdin.
func (c ClientConfig) scriptInput() ([]byte, error) {
	in := map[string]any{"host": strings.TrimSuffix(c.BaseURL, "/"), "writeKey": c.WriteKey, "calls": c.Calls,
		"gzip": c.Gzip}
	switch {
	case c.MaxRetries < 0:
		in["maxRetries"] = 0
	case c.MaxRetries > 0:
		in["maxRetries"] = c.MaxRetries
	}
	if c.FlushAt > 0 {
		in["flushAt"] = c.FlushAt
	}
	return json.Marshal(in)
}

func (c ClientConfig) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return time.Minute
}

// ClientsDir returns where install.sh put the clients: $SIGNALSTAGE_CACHE/clients, else <repo>/.cache/clients
// with <repo> the nearest directory above the working directory that holds go.mod.
func ClientsDir() (string, error) {
	if c := os.Getenv("SIGNALSTAGE_CACHE"); c != "" {
		return filepath.Join(c, "clients"), nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("finding the repository: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, ".cache", "clients"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("finding the repository: no go.mod above the working directory; set SIGNALSTAGE_CACHE")
		}
		dir = parent
	}
}

func clientPath(parts ...string) (string, error) {
	dir, err := ClientsDir()
	if err != nil {
		return "", err
	}
	p := filepath.Join(append([]string{dir}, parts...)...)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%w (%s missing)", ErrClientsMissing, p)
	}
	return p, nil
}

// writeScript copies an embedded script to a temporary file and returns its path and a cleanup.
func writeScript(name string) (string, func(), error) {
	b, err := clientScripts.ReadFile("clients/" + name)
	if err != nil {
		return "", nil, fmt.Errorf("reading embedded %s: %w", name, err)
	}
	dir, err := os.MkdirTemp("", "signalstage-client-")
	if err != nil {
		return "", nil, fmt.Errorf("making a temporary dir: %w", err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		_ = os.RemoveAll(dir)
		return "", nil, fmt.Errorf("writing %s: %w", p, err)
	}
	return p, func() { _ = os.RemoveAll(dir) }, nil
}

// RunNodeClient sends cfg.Calls with @segment/analytics-node (node, as a subprocess) and returns once the
// library has flushed them all (delivered or given up). The error wraps ErrUndelivered when any call was not
// delivered, and ErrClientsMissing when the library is not installed.
func RunNodeClient(ctx context.Context, cfg ClientConfig) (ClientResult, error) {
	modules, err := clientPath("npm", "node_modules")
	if err != nil {
		return ClientResult{}, err
	}
	return runScript(ctx, cfg, "send-node.cjs", func(script string) *exec.Cmd {
		cmd := exec.Command("node", script)
		cmd.Env = append(os.Environ(), "NODE_PATH="+modules)
		return cmd
	})
}

// RunPythonClient sends cfg.Calls with segment-analytics-python (the venv's python, as a subprocess) and returns
// once the client has shut down with its queue flushed. Errors as RunNodeClient.
func RunPythonClient(ctx context.Context, cfg ClientConfig) (ClientResult, error) {
	python, err := clientPath("venv", "bin", "python")
	if err != nil {
		return ClientResult{}, err
	}
	return runScript(ctx, cfg, "send-python.py", func(script string) *exec.Cmd {
		return exec.Command(python, script)
	})
}

func runScript(ctx context.Context, cfg ClientConfig, name string, command func(script string) *exec.Cmd) (ClientResult, error) {
	if err := cfg.validate(); err != nil {
		return ClientResult{}, err
	}
	in, err := cfg.scriptInput()
	if err != nil {
		return ClientResult{}, fmt.Errorf("encoding the calls: %w", err)
	}
	script, cleanup, err := writeScript(name)
	if err != nil {
		return ClientResult{}, err
	}
	defer cleanup()
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout())
	defer cancel()
	cmd := command(script)
	var stdout, stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(in), &stdout, &stderr
	if err := cmd.Start(); err != nil {
		return ClientResult{}, fmt.Errorf("starting %s: %w", name, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var runErr error
	select {
	case runErr = <-done:
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		<-done
		return ClientResult{Output: stderr.String()}, fmt.Errorf("%s did not finish: %w\n%s", name, ctx.Err(), stderr.String())
	}
	res := ClientResult{Output: stderr.String()}
	if line := bytes.TrimSpace(stdout.Bytes()); len(line) > 0 {
		if err := json.Unmarshal(line, &res); err != nil {
			return res, fmt.Errorf("%s printed no result: %w\n%s%s", name, err, stdout.String(), stderr.String())
		}
	}
	var exit *exec.ExitError
	switch {
	case runErr == nil:
		return res, nil
	case errors.As(runErr, &exit) && exit.ExitCode() == 1:
		return res, fmt.Errorf("%s: %w: %d failed: %s", name, ErrUndelivered, res.Failed, strings.Join(res.Errors, "; "))
	default:
		return res, fmt.Errorf("%s: %w\n%s", name, runErr, stderr.String())
	}
}
