// Package console is the operator console: a small web application served by the sink (flag -console-addr)
// with the Signal Queue of a tenant, rule drafting from a queue row, a lead's timeline, a live tail of resolved signals and dead letters with redrive.
//
// Its assets (templates, CSS, JS) are embedded, so it works offline and ships in the binary. Reads go to
// ClickHouse through the sink's own views and queries (sink/queries/signal_queue.sql); writes go through the
// same code as the CLI: rules through schemas/rules' validation and Publisher to signals.rules (the rule model
// the processor's `processor rules` and admin API share), redrive through sink.Redrive (`sink redrive`).
//
// Auth is the admin token, or an operator's token limited to its tenants: a login form (or a one-time login link
// for the dev setup, as the admin) trades it for a session cookie (HttpOnly, SameSite=Strict), and every write
// carries the session's CSRF token.
package console

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/schemas/rules"
	"github.com/signalstage/signalstage/sink"
)

//go:embed assets/*.html assets/*.css assets/*.js
var assets embed.FS

// Config of the console.
type Config struct {
	// Addr is the listen address (flag -console-addr). Required.
	Addr string
	// Token is the admin token an operator logs in with (flag -console-token). Required: at least 16 characters.
	Token string
	// LoginCode, when set, is a one-time login code: GET /login/once?code=LoginCode logs in once and lands on
	// the Signal Queue (the dev setup's link). Empty: New makes one; LoginURL returns the link either way.
	LoginCode string
	// Operators are logins limited to some tenants (flag -console-operators-file); the admin token sees every
	// tenant and the pipeline's health.
	Operators []Operator
	// Metrics are the stages' /metrics URLs by stage name (flag -console-metrics), for the health page.
	Metrics map[string]string
	// Sink is the sink's configuration: brokers, topics and ClickHouse.
	Sink sink.Config
	// Logger (default slog.Default()).
	Logger *slog.Logger
}

// Operator is a login that sees only its tenants: queue, rules, leads, tail and dead letters of those, not the
// pipeline's health (whose metrics name every tenant). Its token is stored as its SHA-256, hex.
type Operator struct {
	Name        string   `json:"name"`
	TokenSHA256 string   `json:"token_sha256"`
	Tenants     []string `json:"tenants"`
}

// ErrConfig is wrapped by every configuration error New returns.
var ErrConfig = errors.New("invalid console config")

// Server is the console's HTTP server.
type Server struct {
	cfg    Config
	log    *slog.Logger
	ln     net.Listener
	ch     driver.Conn
	kafka  *kgo.Client
	pub    *rules.Publisher
	tmpl   *template.Template
	auth   *auth
	health *health
	mux    *http.ServeMux

	// reg is the schema registry the live tail reads registry-framed signals with, opened by the first stream
	// that needs it (cfg.Sink.SchemaRegistry; nil while none).
	regMu sync.Mutex
	reg   *schemas.Registry
}

// schemaRegistry returns the registry of cfg.Sink.SchemaRegistry (nil when none is configured), opened once.
func (s *Server) schemaRegistry(ctx context.Context) (*schemas.Registry, error) {
	if s.cfg.Sink.SchemaRegistry == "" {
		return nil, nil
	}
	s.regMu.Lock()
	defer s.regMu.Unlock()
	if s.reg == nil {
		reg, err := schemas.NewRegistry(ctx, s.cfg.Sink.SchemaRegistry)
		if err != nil {
			return nil, err
		}
		s.reg = reg
	}
	return s.reg, nil
}

// New validates cfg, listens on cfg.Addr and connects to ClickHouse and Kafka (lazily: nothing is dialled until
// a page needs it).
func New(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	switch {
	case cfg.Addr == "":
		return nil, fmt.Errorf("%w: -console-addr: empty", ErrConfig)
	case len(cfg.Token) < 16:
		return nil, fmt.Errorf("%w: -console-token: must be at least 16 characters", ErrConfig)
	}
	tmpl, err := template.New("").Funcs(funcs).ParseFS(assets, "assets/*.html")
	if err != nil {
		return nil, fmt.Errorf("parsing console templates: %w", err)
	}
	a, err := newAuth(cfg.Token, cfg.LoginCode, cfg.Operators)
	if err != nil {
		return nil, err
	}
	ch, err := clickhouse.Open(&clickhouse.Options{Addr: []string{cfg.Sink.ClickHouseAddr}, DialTimeout: 5 * time.Second,
		Auth: clickhouse.Auth{Database: cfg.Sink.Database, Username: orDefault(cfg.Sink.ClickHouseUser, "default"),
			Password: cfg.Sink.ClickHousePassword}})
	if err != nil {
		return nil, fmt.Errorf("opening clickhouse for the console: %w", err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(cfg.Sink.Brokers...))
	if err != nil {
		ch.Close()
		return nil, fmt.Errorf("creating the console's kafka client: %w", err)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		ch.Close()
		cl.Close()
		return nil, fmt.Errorf("-console-addr: %w", err)
	}
	s := &Server{cfg: cfg, log: cfg.Logger, ln: ln, ch: ch, kafka: cl, tmpl: tmpl, auth: a, health: newHealth(cfg.Metrics),
		pub: rules.NewPublisher(cl, cfg.Sink.Topics.Name(schemas.TopicRules))}
	s.routes()
	return s, nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// URL is the console's base URL, http://host:port.
func (s *Server) URL() string { return "http://" + s.ln.Addr().String() }

// LoginURL is the one-time login link; it works once.
func (s *Server) LoginURL() string { return s.URL() + "/login/once?code=" + s.auth.code }

func (s *Server) routes() {
	m := http.NewServeMux()
	static, _ := fs.Sub(assets, "assets")
	m.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	m.HandleFunc("GET /login", s.loginPage)
	m.HandleFunc("POST /login", s.login)
	m.HandleFunc("GET /login/once", s.loginOnce)
	m.HandleFunc("POST /logout", s.authed(s.logout))
	m.HandleFunc("GET /{$}", s.authed(func(w http.ResponseWriter, r *http.Request, _ *session) {
		http.Redirect(w, r, "/queue", http.StatusSeeOther)
	}))
	m.HandleFunc("GET /queue", s.authed(s.queuePage))
	m.HandleFunc("GET /rules", s.authed(s.rulesPage))
	m.HandleFunc("GET /rules/draft", s.authed(s.draftPage))
	m.HandleFunc("GET /rules/edit", s.authed(s.editPage))
	m.HandleFunc("GET /rules/delete", s.authed(s.deletePage))
	m.HandleFunc("POST /rules/delete", s.authed(s.deleteRule))
	m.HandleFunc("POST /rules/apply", s.authed(s.applyRule))
	m.HandleFunc("GET /lead", s.authed(s.leadPage))
	m.HandleFunc("GET /deadletters", s.authed(s.deadLettersPage))
	m.HandleFunc("POST /deadletters/redrive", s.authed(s.redrive))
	m.HandleFunc("GET /tail", s.authed(s.tailPage))
	m.HandleFunc("GET /health", s.authed(s.healthPage))
	m.HandleFunc("GET /tail/stream", s.authed(s.tailStream))
	s.mux = m
}

// ServeHTTP serves the console (for tests that wrap it).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	// same-origin, not no-referrer: under no-referrer Chromium sends "Origin: null" on form posts, which
	// sameOrigin must refuse.
	w.Header().Set("Referrer-Policy", "same-origin")
	s.mux.ServeHTTP(w, r)
}

// Run serves until ctx is cancelled, then shuts down (5 s for open requests; live tails are cut) and closes its
// clients.
func (s *Server) Run(ctx context.Context) error {
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second, BaseContext: func(net.Listener) context.Context { return ctx }}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(s.ln) }()
	hctx, stopHealth := context.WithCancel(ctx)
	defer stopHealth()
	go s.health.run(hctx)
	s.log.Info("console listening", "url", s.URL())
	var err error
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = srv.Shutdown(sctx)
		cancel()
	case err = <-errc:
		err = fmt.Errorf("console: %w", err)
	}
	s.kafka.Close()
	s.ch.Close()
	return err
}

var titles = map[string]string{"login": "Log in", "queue": "Signal Queue", "draft": "Draft a rule", "tail": "Live tail",
	"error": "Error", "lead": "Lead", "rules": "Mapping rules", "delete": "Delete a rule", "deadletters": "Dead letters", "health": "Pipeline health", "redrive": "Redrive"}

// render executes the named page template with data; the layout adds the session's CSRF token and nav.
func (s *Server) render(w http.ResponseWriter, status int, page string, sess *session, data map[string]any) {
	if data == nil {
		data = map[string]any{}
	}
	data["Page"] = page
	data["Title"] = titles[page]
	if sess != nil {
		data["CSRF"] = sess.csrf
		data["LoggedIn"] = true
		data["Admin"] = sess.admin()
		data["Operator"] = sess.name
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if err := s.tmpl.ExecuteTemplate(w, page+".html", data); err != nil {
		s.log.Warn("console: rendering", "page", page, "err", err)
	}
}

func (s *Server) fail(w http.ResponseWriter, sess *session, err error) {
	s.log.Warn("console: request failed", "err", err)
	s.render(w, http.StatusInternalServerError, "error", sess, map[string]any{"Error": err.Error()})
}
