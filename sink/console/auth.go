package console

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/http"
	"regexp"
	"sync"
	"time"
)

// sessionCookie names the session cookie.
const sessionCookie = "signalstage_console"

// sessionTTL is how long a session lasts after its last request.
const sessionTTL = 12 * time.Hour

// auth holds the admin token, the one-time login code and the sessions (in memory: a restart logs everyone out).
type auth struct {
	token     string
	operators []Operator
	mu        sync.Mutex
	code      string // "" once used
	sess      map[string]*session
	now       func() time.Time
}

type session struct {
	csrf    string
	expires time.Time
	name    string
	tenants map[string]bool // nil: every tenant (the admin token)
}

// allowed reports whether the session may see tenant t.
func (s *session) allowed(t string) bool { return s.tenants == nil || s.tenants[t] }

// admin reports whether the session logged in with the admin token (every tenant, pipeline health).
func (s *session) admin() bool { return s.tenants == nil }

// visible returns the tenants of ts the session may see.
func (s *session) visible(ts []string) []string {
	if s.admin() {
		return ts
	}
	var out []string
	for _, t := range ts {
		if s.tenants[t] {
			out = append(out, t)
		}
	}
	return out
}

var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)

func newAuth(token, code string, ops []Operator) (*auth, error) {
	for i, op := range ops {
		if op.Name == "" || !sha256Hex.MatchString(op.TokenSHA256) || len(op.Tenants) == 0 {
			return nil, fmt.Errorf("%w: -console-operators-file: operator #%d needs a name, token_sha256 (64 lower-case hex) and tenants", ErrConfig, i+1)
		}
	}
	if code == "" {
		var err error
		if code, err = randomHex(16); err != nil {
			return nil, err
		}
	}
	return &auth{token: token, operators: ops, code: code, sess: map[string]*session{}, now: time.Now}, nil
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("reading random bytes: %w", err)
	}
	return hex.EncodeToString(b), nil
}

func equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

// operator returns the operator whose token is token, or false.
func (a *auth) operator(token string) (Operator, bool) {
	sum := sha256.Sum256([]byte(token))
	h := hex.EncodeToString(sum[:])
	for _, op := range a.operators {
		if equal(h, op.TokenSHA256) {
			return op, true
		}
	}
	return Operator{}, false
}

// start makes a session (for the admin when tenants is nil) and sets its cookie.
func (a *auth) start(w http.ResponseWriter, name string, tenants []string) error {
	id, err := randomHex(32)
	if err != nil {
		return err
	}
	csrf, err := randomHex(32)
	if err != nil {
		return err
	}
	a.mu.Lock()
	now := a.now()
	for k, s := range a.sess {
		if now.After(s.expires) {
			delete(a.sess, k)
		}
	}
	sess := &session{csrf: csrf, expires: now.Add(sessionTTL), name: name}
	if tenants != nil {
		sess.tenants = map[string]bool{}
		for _, t := range tenants {
			sess.tenants[t] = true
		}
	}
	a.sess[id] = sess
	a.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: id, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, MaxAge: int(sessionTTL.Seconds())})
	return nil
}

// lookup returns the request's live session, or nil.
func (a *auth) lookup(r *http.Request) *session {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.sess[c.Value]
	if s == nil || a.now().After(s.expires) {
		delete(a.sess, c.Value)
		return nil
	}
	s.expires = a.now().Add(sessionTTL)
	return s
}

func (a *auth) end(r *http.Request) {
	if c, err := r.Cookie(sessionCookie); err == nil {
		a.mu.Lock()
		delete(a.sess, c.Value)
		a.mu.Unlock()
	}
}

// useCode reports whether code is the one-time login code, and spends it.
func (a *auth) useCode(code string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.code == "" || code == "" || !equal(code, a.code) {
		return false
	}
	a.code = ""
	return true
}

// authed wraps a handler that needs a session: without one, pages redirect to the login form (other requests get
// 401); a POST must carry the session's CSRF token in the form field csrf.
func (s *Server) authed(h func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sess := s.auth.lookup(r)
		if sess == nil {
			if r.Method == http.MethodGet && r.Header.Get("Accept") != "text/event-stream" {
				http.Redirect(w, r, "/login", http.StatusSeeOther)
				return
			}
			http.Error(w, "not logged in", http.StatusUnauthorized)
			return
		}
		if r.Method == http.MethodPost && (!sameOrigin(r) || !equal(r.PostFormValue("csrf"), sess.csrf)) {
			http.Error(w, "missing or wrong CSRF token: reload the page and try again", http.StatusForbidden)
			return
		}
		// Every page and write names its tenant in the parameter tenant (query or form): one check for all.
		if t := r.FormValue("tenant"); t != "" && !sess.allowed(t) {
			http.Error(w, "this login may not see tenant "+t, http.StatusForbidden)
			return
		}
		h(w, r, sess)
	}
}

// sameOrigin reports whether a request's Origin header, when the browser sent one, is the console itself: a
// cross-site form post is refused even before its CSRF token is checked, and the login form (which has no
// session to hold a token yet) is protected by it alone.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	return o == "" || o == "http://"+r.Host || o == "https://"+r.Host
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	s.render(w, http.StatusOK, "login", nil, nil)
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		http.Error(w, "cross-origin login refused", http.StatusForbidden)
		return
	}
	token := r.PostFormValue("token")
	name, tenants := "admin", []string(nil)
	if !equal(token, s.auth.token) {
		op, ok := s.auth.operator(token)
		if !ok {
			s.log.Warn("console: failed login", "remote", r.RemoteAddr)
			s.render(w, http.StatusUnauthorized, "login", nil, map[string]any{"Error": "That is not the admin token or an operator's token."})
			return
		}
		name, tenants = op.Name, op.Tenants
	}
	s.log.Info("console: login", "operator", name, "remote", r.RemoteAddr)
	if err := s.auth.start(w, name, tenants); err != nil {
		s.fail(w, nil, err)
		return
	}
	http.Redirect(w, r, "/queue", http.StatusSeeOther)
}

func (s *Server) loginOnce(w http.ResponseWriter, r *http.Request) {
	if !s.auth.useCode(r.URL.Query().Get("code")) {
		s.render(w, http.StatusUnauthorized, "login", nil, map[string]any{
			"Error": "That login link was already used or is wrong: log in with the admin token."})
		return
	}
	if err := s.auth.start(w, "admin", nil); err != nil {
		s.fail(w, nil, err)
		return
	}
	http.Redirect(w, r, "/queue", http.StatusSeeOther)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request, _ *session) {
	s.auth.end(r)
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}
