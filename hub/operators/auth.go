package operators

import (
	"bytes"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"linli/hub/api"
	"linli/shared/httpx"
)

// CookieName is the dashboard's session cookie.
const CookieName = "linli_session"

// CSRFHeader carries a session's CSRF token on every write the dashboard
// makes; a cookie alone never authorises a change.
const CSRFHeader = "X-CSRF-Token"

// Session is a dashboard login. The cookie holds a random id; the store
// holds only its digest, so a copy of the store logs nobody in.
type Session struct {
	Name    string    `json:"name"` // account name, or AdminName for the admin token
	Admin   bool      `json:"admin,omitempty"`
	CSRF    string    `json:"csrf"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"`
}

var (
	errBadToken = &httpx.Error{Status: http.StatusUnauthorized, Msg: "the bearer token is not valid"}
	errSession  = &httpx.Error{Status: http.StatusUnauthorized, Msg: "the session has ended; log in again"}
	errCSRF     = &httpx.Error{Status: http.StatusForbidden, Msg: "a write from the dashboard needs its " + CSRFHeader + " header"}
	errOrigin   = &httpx.Error{Status: http.StatusForbidden, Msg: "cross-origin writes are refused"}
)

// crossOrigin refuses browser writes from other origins (Sec-Fetch-Site,
// Origin), a second line behind the CSRF token.
var crossOrigin = http.NewCrossOriginProtection()

// Authenticate implements api.Authorizer: a bearer token (the admin token
// or an operator's API token), else the session cookie. A session's write
// must carry the session's CSRF token and come from the same origin.
// No credentials at all is the anonymous principal and no error.
func (s *Service) Authenticate(r *http.Request) (api.Principal, error) {
	s.authentications.Add(1)
	if h := r.Header.Get("Authorization"); h != "" {
		tok, ok := strings.CutPrefix(h, "Bearer ")
		if !ok {
			return api.Principal{}, nil
		}
		return s.TokenPrincipal(strings.TrimSpace(tok))
	}
	if strings.HasPrefix(r.URL.Path, "/open311/") {
		// Open311 clients send their key as api_key (GeoReport v2).
		if key := r.URL.Query().Get("api_key"); key != "" {
			return s.TokenPrincipal(key)
		}
		if r.Method == http.MethodPost {
			if key := formKey(r); key != "" {
				return s.TokenPrincipal(key)
			}
		}
	}
	c, err := r.Cookie(CookieName)
	if err != nil || c.Value == "" {
		return api.Principal{}, nil
	}
	sess, err := s.session(c.Value)
	if err != nil {
		return api.Principal{}, err
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead && r.Method != http.MethodOptions {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get(CSRFHeader)), []byte(sess.CSRF)) != 1 {
			return api.Principal{}, errCSRF
		}
		if err := crossOrigin.Check(r); err != nil {
			return api.Principal{}, errOrigin
		}
	}
	return s.sessionPrincipal(sess)
}

// formKey reads the api_key of a form body. Authentication comes before
// the audit log, which keeps the body it was sent, so the bytes read here
// are put back for it; the parsed form stays on r for the handler.
func formKey(r *http.Request) string {
	if r.Body == nil || r.Body == http.NoBody {
		return ""
	}
	rest := r.Body
	head, err := io.ReadAll(io.LimitReader(rest, auditRead))
	if err != nil {
		return ""
	}
	replay := func() io.ReadCloser {
		return struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(head), rest), rest}
	}
	r.Body = replay()
	key := r.PostFormValue("api_key")
	r.Body = replay()
	return key
}

// TokenPrincipal authenticates a bearer token or Open311 api_key.
func (s *Service) TokenPrincipal(tok string) (api.Principal, error) {
	if s.isAdminToken(tok) {
		return adminPrincipal(api.ViaAdminToken), nil
	}
	if !strings.HasPrefix(tok, tokenPrefix) {
		return api.Principal{}, errBadToken
	}
	t, err := s.st.Token(digest(tok))
	if err != nil {
		if errors.Is(err, errNotFound) {
			return api.Principal{}, errBadToken
		}
		return api.Principal{}, fmt.Errorf("look up token: %w", err)
	}
	p, err := s.tokenPrincipal(t)
	if err != nil {
		return api.Principal{}, errBadToken
	}
	s.mu.Lock()
	s.lastUsed[t.ID] = s.opts.Now().UTC()
	s.mu.Unlock()
	return p, nil
}

// tokenPrincipal is what a token may do now: its owner's current rights,
// narrowed to the token's role and sites. A token of a disabled or
// deleted owner is dead.
func (s *Service) tokenPrincipal(t Token) (api.Principal, error) {
	var owner api.Principal
	if t.Owner == AdminName {
		owner = adminPrincipal(api.ViaToken)
	} else {
		a, err := s.Account(t.Owner)
		if err != nil {
			return api.Principal{}, err
		}
		if a.Disabled {
			return api.Principal{}, ErrDisabled
		}
		owner = principalOf(a, api.ViaToken)
	}
	return narrow(owner, t.Role, t.Sites), nil
}

// narrow caps p at role and sites (empty sites: p's own).
func narrow(p api.Principal, role string, sites []string) api.Principal {
	if role != "" && roleRank(role) < roleRank(p.Role) {
		p.Role, p.Admin = role, role == api.RoleAdmin
	}
	if len(sites) > 0 {
		if len(p.Sites) == 0 {
			p.Sites = slices.Clone(sites)
		} else {
			var both []string
			for _, s := range sites {
				if slices.Contains(p.Sites, s) {
					both = append(both, s)
				}
			}
			if len(both) == 0 {
				both = []string{"-"} // sees nothing: no site has this id
			}
			p.Sites = both
		}
	}
	return p
}

func (s *Service) sessionPrincipal(sess Session) (api.Principal, error) {
	if sess.Admin {
		return adminPrincipal(api.ViaSession), nil
	}
	a, err := s.Account(sess.Name)
	if err != nil || a.Disabled {
		return api.Principal{}, errSession
	}
	return principalOf(a, api.ViaSession), nil
}

// newSession stores a session and returns its cookie value.
func (s *Service) newSession(name string, admin bool) (id string, sess Session, err error) {
	id = secret()
	now := s.stamp()
	sess = Session{Name: name, Admin: admin, CSRF: secret(), Created: now, Expires: now.Add(s.opts.SessionTTL)}
	if err := s.st.PutSession(digest(id), sess, s.opts.SessionTTL); err != nil {
		return "", Session{}, fmt.Errorf("store session: %w", err)
	}
	return id, sess, nil
}

func (s *Service) session(id string) (Session, error) {
	sess, err := s.st.Session(digest(id))
	if err != nil {
		if errors.Is(err, errNotFound) {
			return Session{}, errSession
		}
		return Session{}, fmt.Errorf("look up session: %w", err)
	}
	if !s.opts.Now().Before(sess.Expires) {
		return Session{}, errSession
	}
	return sess, nil
}

func (s *Service) endSession(id string) error {
	if err := s.st.DeleteSession(digest(id)); err != nil {
		return fmt.Errorf("end session: %w", err)
	}
	return nil
}

// endSessions ends every session of an account.
func (s *Service) endSessions(name string) error {
	if err := s.st.DeleteSessions(name); err != nil {
		return fmt.Errorf("end sessions of %s: %w", name, err)
	}
	return nil
}
