package console

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// sessionCookie names the session cookie.
const sessionCookie = "signalstage_console"

// sessionTTL is how long a session lasts after its last request.
const sessionTTL = 12 * time.Hour

// auth holds the admin token, the one-time login code and the sessions (in memory: a restart logs everyone out).
type auth struct {
	token string
	mu    sync.Mutex
	code  string // "" once used
	sess  map[string]*session
	now   func() time.Time
}

type session struct {
	csrf    string
	expires time.Time
}

func newAuth(token, code string) (*auth, error) {
	if code == "" {
		var err error
		if code, err = randomHex(16); err != nil {
			return nil, err
		}
	}
	return &auth{token: token, code: code, sess: map[string]*session{}, now: time.Now}, nil
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("reading random bytes: %w", err)
	}
	return hex.EncodeToString(b), nil
}

func equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

// start makes a session and sets its cookie.
func (a *auth) start(w http.ResponseWriter) error {
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
	a.sess[id] = &session{csrf: csrf, expires: now.Add(sessionTTL)}
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
		if r.Method == http.MethodPost && !equal(r.PostFormValue("csrf"), sess.csrf) {
			http.Error(w, "missing or wrong CSRF token: reload the page and try again", http.StatusForbidden)
			return
		}
		h(w, r, sess)
	}
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	s.render(w, http.StatusOK, "login", nil, nil)
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	if !equal(r.PostFormValue("token"), s.auth.token) {
		s.log.Warn("console: failed login", "remote", r.RemoteAddr)
		s.render(w, http.StatusUnauthorized, "login", nil, map[string]any{"Error": "That is not the admin token."})
		return
	}
	if err := s.auth.start(w); err != nil {
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
	if err := s.auth.start(w); err != nil {
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
