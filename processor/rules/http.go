package rules

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	srules "github.com/signalstage/signalstage/schemas/rules"
)

// APIPrefix is where the rules HTTP API lives on the processor's admin listener.
const APIPrefix = "/api/signal-staging/rules"

// HandlerConfig configures the rules HTTP API.
type HandlerConfig struct {
	// Token is the admin bearer token (required): requests must send `Authorization: Bearer <Token>`.
	Token string
	// Rules returns the Set in effect on this instance (Watcher.Set) (required).
	Rules func() *Set
	// Publisher writes changes (required).
	Publisher *Publisher
	// Settle bounds how long PUT and DELETE wait for the change to be in effect on this instance before
	// answering, so a GET right after sees it (default 5s; the change is durable either way).
	Settle time.Duration
	// MaxRulesPerTenant refuses a PUT that would create a tenant's rule beyond this count (default 1000): the
	// cost of matching grows with the rules an event must be checked against.
	MaxRulesPerTenant int
	// Logger gets failures (default slog.Default()).
	Logger *slog.Logger
}

// NewHandler returns the rules API; mount it on the admin mux at APIPrefix and below:
//
//	GET    /api/signal-staging/rules[?tenant=T]        {"rules": [...]}
//	GET    /api/signal-staging/rules/{tenant}          {"rules": [...]}
//	GET    /api/signal-staging/rules/{tenant}/{id}     the rule, 404 if none
//	PUT    /api/signal-staging/rules/{tenant}/{id}     body: rule (JSON or YAML); 200 with the rule, 422 if invalid,
//	                                                   409 if the tenant has MaxRulesPerTenant rules already
//	DELETE /api/signal-staging/rules/{tenant}/{id}     204 (idempotent)
//	POST   /api/signal-staging/rules/suggest[?tenant=T] body: sample payload or queue row; 200 {"rule", "paths"}
//
// Errors are {"error": message, "field": field at fault (validation only)}.
func NewHandler(cfg HandlerConfig) (http.Handler, error) {
	switch {
	case cfg.Token == "":
		return nil, errors.New("rules api: empty admin token")
	case cfg.Rules == nil:
		return nil, errors.New("rules api: no rule source")
	case cfg.Publisher == nil:
		return nil, errors.New("rules api: no publisher")
	}
	if cfg.Settle <= 0 {
		cfg.Settle = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxRulesPerTenant <= 0 {
		cfg.MaxRulesPerTenant = 1000
	}
	h := &handler{cfg: cfg, token: sha256.Sum256([]byte(cfg.Token))}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+APIPrefix, h.list)
	mux.HandleFunc("GET "+APIPrefix+"/{tenant}", h.list)
	mux.HandleFunc("GET "+APIPrefix+"/{tenant}/{id}", h.get)
	mux.HandleFunc("PUT "+APIPrefix+"/{tenant}/{id}", h.put)
	mux.HandleFunc("DELETE "+APIPrefix+"/{tenant}/{id}", h.delete)
	mux.HandleFunc("POST "+APIPrefix+"/suggest", h.suggest)
	return h.auth(mux), nil
}

type handler struct {
	cfg   HandlerConfig
	token [32]byte
}

// auth compares hashes in constant time, so neither the token's content nor its length leaks through timing.
func (h *handler) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		sum := sha256.Sum256([]byte(got))
		if !ok || subtle.ConstantTimeCompare(sum[:], h.token[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="signalstage"`)
			writeError(w, http.StatusUnauthorized, errors.New("missing or wrong admin token"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (h *handler) list(w http.ResponseWriter, r *http.Request) {
	tenant := r.PathValue("tenant")
	if tenant == "" {
		tenant = r.URL.Query().Get("tenant")
	}
	s := h.cfg.Rules()
	rs := []Rule{}
	for _, t := range s.Tenants() {
		if tenant == "" || t == tenant {
			rs = append(rs, s.Rules(t)...)
		}
	}
	writeJSONStatus(w, http.StatusOK, map[string]any{"rules": rs})
}

func (h *handler) get(w http.ResponseWriter, r *http.Request) {
	rule, ok := h.cfg.Rules().Rule(r.PathValue("tenant"), r.PathValue("id"))
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Errorf("%w: %s/%s", ErrNotFound, r.PathValue("tenant"), r.PathValue("id")))
		return
	}
	writeJSONStatus(w, http.StatusOK, rule)
}

func (h *handler) put(w http.ResponseWriter, r *http.Request) {
	tenant, id := r.PathValue("tenant"), r.PathValue("id")
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, srules.MaxFileSize))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, err)
		return
	}
	rs, err := Parse(body)
	if err == nil && len(rs) != 1 {
		err = fmt.Errorf("body has %d rules, want one", len(rs))
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	rule := rs[0]
	if rule.Tenant == "" {
		rule.Tenant = tenant
	}
	if rule.ID == "" {
		rule.ID = id
	}
	if rule.Tenant != tenant || rule.ID != id {
		writeError(w, http.StatusBadRequest, fmt.Errorf("body names rule %s/%s, URL %s/%s", rule.Tenant, rule.ID, tenant, id))
		return
	}
	if err := Validate(&rule); err != nil {
		writeError(w, http.StatusUnprocessableEntity, err)
		return
	}
	cur := h.cfg.Rules()
	if _, exists := cur.Rule(tenant, id); !exists && len(cur.Rules(tenant)) >= h.cfg.MaxRulesPerTenant {
		writeError(w, http.StatusConflict, fmt.Errorf("tenant %s already has %d rules, the most allowed", tenant, h.cfg.MaxRulesPerTenant))
		return
	}
	before := time.Now().UTC().Truncate(time.Millisecond)
	if err := h.cfg.Publisher.Apply(r.Context(), rule); err != nil {
		h.cfg.Logger.Error("applying rule", "tenant", tenant, "id", id, "err", err)
		writeError(w, http.StatusBadGateway, err)
		return
	}
	applied, _ := h.settle(r.Context(), func(s *Set) (Rule, bool) {
		got, ok := s.Rule(tenant, id)
		return got, ok && !got.UpdatedAt.Before(before)
	})
	if applied.ID == "" {
		applied = rule
	}
	writeJSONStatus(w, http.StatusOK, applied)
}

func (h *handler) delete(w http.ResponseWriter, r *http.Request) {
	tenant, id := r.PathValue("tenant"), r.PathValue("id")
	if err := h.cfg.Publisher.Delete(r.Context(), tenant, id); err != nil {
		h.cfg.Logger.Error("deleting rule", "tenant", tenant, "id", id, "err", err)
		writeError(w, http.StatusBadGateway, err)
		return
	}
	h.settle(r.Context(), func(s *Set) (Rule, bool) {
		_, ok := s.Rule(tenant, id)
		return Rule{}, !ok
	})
	w.WriteHeader(http.StatusNoContent)
}

func (h *handler) suggest(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, srules.MaxFileSize))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, err)
		return
	}
	sg, err := Suggest(body, r.URL.Query().Get("tenant"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	writeJSONStatus(w, http.StatusOK, sg)
}

// settle waits until done holds for this instance's Set, or Settle passes.
func (h *handler) settle(ctx context.Context, done func(*Set) (Rule, bool)) (Rule, bool) {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.Settle)
	defer cancel()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if r, ok := done(h.cfg.Rules()); ok {
			return r, true
		}
		select {
		case <-ctx.Done():
			return Rule{}, false
		case <-t.C:
		}
	}
}

func writeError(w http.ResponseWriter, status int, err error) {
	body := map[string]string{"error": err.Error()}
	var fe *FieldError
	if errors.As(err, &fe) {
		body["field"] = fe.Field
	}
	writeJSONStatus(w, status, body)
}

func writeJSONStatus(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
