package serve

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The console's sessions: logging in with the bearer token sets a cookie
// signed with a key derived from that token, so every replica serving the
// same configuration accepts it and changing the token ends every session.
// Each form carries a CSRF token derived from the session; a mutation needs
// both.
const (
	sessionCookie = "dtebridge_session"
	sessionLife   = 12 * time.Hour
	csrfField     = "csrf"
)

func (s *Server) sessionKey() []byte {
	m := hmac.New(sha256.New, []byte(s.token))
	m.Write([]byte("dtebridge console session v1"))
	return m.Sum(nil)
}

func (s *Server) sign(parts ...string) string {
	m := hmac.New(sha256.New, s.sessionKey())
	m.Write([]byte(strings.Join(parts, "|")))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// newSession returns a session cookie value: expiry, nonce, signature.
func (s *Server) newSession() (string, error) {
	nonce := make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	exp := strconv.FormatInt(time.Now().Add(sessionLife).Unix(), 10)
	n := base64.RawURLEncoding.EncodeToString(nonce)
	return exp + "." + n + "." + s.sign("session", exp, n), nil
}

// session returns the nonce of r's valid session, or "" without one.
func (s *Server) session(r *http.Request) string {
	if s.token == "" {
		return ""
	}
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return ""
	}
	parts := strings.Split(c.Value, ".")
	if len(parts) != 3 {
		return ""
	}
	exp, err := strconv.ParseInt(parts[0], 10, 64)
	if err != nil || time.Now().Unix() > exp {
		return ""
	}
	if subtle.ConstantTimeCompare([]byte(parts[2]), []byte(s.sign("session", parts[0], parts[1]))) != 1 {
		return ""
	}
	return parts[1]
}

// csrf is the token forms of session nonce carry.
func (s *Server) csrf(nonce string) string {
	if nonce == "" {
		return ""
	}
	return s.sign("csrf", nonce)
}

// mayMutate reports whether r may change anything from the console: a
// valid session and its CSRF token, or the bearer token (for scripts).
func (s *Server) mayMutate(r *http.Request) error {
	if s.authorized(r) {
		return nil
	}
	if s.token == "" {
		return fmt.Errorf("no http.token_file is configured, so nothing may be changed from here")
	}
	nonce := s.session(r)
	if nonce == "" {
		return fmt.Errorf("log in with the bearer token first")
	}
	if subtle.ConstantTimeCompare([]byte(r.PostFormValue(csrfField)), []byte(s.csrf(nonce))) != 1 {
		return fmt.Errorf("the form's CSRF token is missing or wrong: reload the page and try again")
	}
	return nil
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	next := r.PostFormValue("next")
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") {
		next = "/"
	}
	got := r.PostFormValue("token")
	if s.token == "" || subtle.ConstantTimeCompare([]byte(got), []byte(s.token)) != 1 {
		s.log.Warn("console login refused", "remote", r.RemoteAddr)
		s.render(w, r, http.StatusUnauthorized, "login", map[string]any{"Next": next, "Error": "That is not the bearer token of this bridge (http.token_file)."})
		return
	}
	v, err := s.newSession()
	if err != nil {
		http.Error(w, "cannot create a session", http.StatusInternalServerError)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: v, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: s.config().HTTP.TLSCertFile != "", MaxAge: int(sessionLife.Seconds())})
	s.log.Info("console login", "remote", r.RemoteAddr)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode, MaxAge: -1})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}
