package operators

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"linli/hub/api"
	"linli/shared/httpx"
)

// Mount adds the account routes:
//
//	POST   /api/v1/login              {"name","password"} or {"token":"<admin token>"} → session cookie + CSRF token
//	POST   /api/v1/logout             ends the session
//	GET    /api/v1/session            who is logged in, with the CSRF token
//	POST   /api/v1/session/password   {"old","new"}: change one's own password
//	GET    /api/v1/operators          admin: every account
//	POST   /api/v1/operators          admin: {"name","password","role","sites","display"}
//	PATCH  /api/v1/operators/{name}   admin: {"role","sites","password","disabled","display"}
//	DELETE /api/v1/operators/{name}   admin
//	GET    /api/v1/tokens             one's API tokens (admins: everyone's)
//	POST   /api/v1/tokens             {"name","role","sites"} → the token, shown once
//	DELETE /api/v1/tokens/{id}
//	GET    /api/v1/audit?who=&before=&limit=   admin: the audit log, newest first
func (s *Service) Mount(mux *http.ServeMux) {
	h := func(pattern string, f func(http.ResponseWriter, *http.Request) error) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			if err := f(w, r); err != nil {
				var he *httpx.Error
				if !errors.As(err, &he) {
					s.log.Error("operator request", "path", r.URL.Path, "err", err)
				}
				httpx.WriteError(w, err)
			}
		})
	}
	h("POST /api/v1/login", s.login)
	h("POST /api/v1/logout", s.logout)
	h("GET /api/v1/session", s.whoami)
	h("POST /api/v1/session/password", s.password)
	h("GET /api/v1/operators", s.admin(s.listAccounts))
	h("POST /api/v1/operators", s.admin(s.createAccount))
	h("PATCH /api/v1/operators/{name}", s.admin(s.updateAccount))
	h("DELETE /api/v1/operators/{name}", s.admin(s.deleteAccount))
	h("GET /api/v1/tokens", s.listTokens)
	h("POST /api/v1/tokens", s.createToken)
	h("DELETE /api/v1/tokens/{id}", s.revokeToken)
	h("GET /api/v1/audit", s.admin(s.audit))
}

// caller returns who sent r, as authenticated once for the request
// (Audit), and requires someone.
func (s *Service) caller(r *http.Request) (api.Principal, error) {
	p, err, ok := api.PrincipalFromContext(r.Context())
	if !ok {
		p, err = s.Authenticate(r)
	}
	if err != nil {
		return api.Principal{}, err
	}
	if p.Name == "" {
		return api.Principal{}, &httpx.Error{Status: http.StatusUnauthorized, Msg: "log in first, or send Authorization: Bearer <token>"}
	}
	return p, nil
}

func (s *Service) admin(f func(http.ResponseWriter, *http.Request, api.Principal) error) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		p, err := s.caller(r)
		if err != nil {
			return err
		}
		if !p.Admin {
			return &httpx.Error{Status: http.StatusForbidden, Msg: "this needs an admin"}
		}
		return f(w, r, p)
	}
}

type sessionOut struct {
	Name  string   `json:"name"`
	Role  string   `json:"role"`
	Admin bool     `json:"admin"`
	Sites []string `json:"sites"` // empty: every site
	Via   string   `json:"via"`
	CSRF  string   `json:"csrf,omitempty"`
}

func sessionView(p api.Principal, csrf string) sessionOut {
	sites := p.Sites
	if sites == nil {
		sites = []string{}
	}
	return sessionOut{Name: p.Name, Role: p.Role, Admin: p.Admin, Sites: sites, Via: p.Via, CSRF: csrf}
}

func (s *Service) login(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Name     string `json:"name"`
		Password string `json:"password"`
		Token    string `json:"token"`
	}
	if err := httpx.Decode(w, r, &req); err != nil {
		return err
	}
	name, client := strings.TrimSpace(req.Name), s.clientAddr(r)
	if req.Token != "" {
		name = AdminName
	}
	if name == "" {
		return httpx.BadRequest("name", "name and password, or the admin token, are required")
	}
	wait, err := s.limiter.Wait(name, client)
	if err != nil {
		return fmt.Errorf("login limits: %w", err)
	}
	if wait > 0 {
		secs := int(math.Ceil(wait.Seconds()))
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		s.logLogin(r, name, http.StatusTooManyRequests, "rate limited")
		return &httpx.Error{Status: http.StatusTooManyRequests, Msg: fmt.Sprintf("too many failed logins; try again in %ds", secs)}
	}
	var p api.Principal
	if req.Token != "" {
		if !s.isAdminToken(strings.TrimSpace(req.Token)) {
			s.loginFailed(name, client)
			s.logLogin(r, name, http.StatusUnauthorized, "wrong admin token")
			return &httpx.Error{Status: http.StatusUnauthorized, Field: "token", Msg: "that is not the admin token (<data>/admin.token)"}
		}
		p = adminPrincipal(api.ViaSession)
	} else {
		a, err := s.checkPassword(name, req.Password)
		switch {
		case errors.Is(err, ErrPassword), errors.Is(err, ErrDisabled):
			// One answer for both, so a login does not reveal which
			// accounts exist or are disabled.
			s.loginFailed(name, client)
			s.logLogin(r, name, http.StatusUnauthorized, err.Error())
			return &httpx.Error{Status: http.StatusUnauthorized, Msg: ErrPassword.Error()}
		case err != nil:
			return err
		}
		p = principalOf(a, api.ViaSession)
	}
	if err := s.limiter.Succeed(name); err != nil {
		s.log.Error("login limits: clear failures", "err", err, "name", name)
	}
	id, sess, err := s.newSession(p.Name, p.Admin && p.Name == AdminName)
	if err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: id, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil, MaxAge: int(s.opts.SessionTTL / time.Second)})
	s.logLogin(r, name, http.StatusOK, "")
	httpx.WriteJSON(w, http.StatusOK, sessionView(p, sess.CSRF))
	return nil
}

// loginFailed counts a failed login; a failure to count it is logged (the
// answer is a refusal either way).
func (s *Service) loginFailed(name, client string) {
	if err := s.limiter.Fail(name, client); err != nil {
		s.log.Error("login limits: count a failure", "err", err, "name", name, "client", client)
	}
}

// logLogin records a login attempt; logins carry no credentials the audit
// middleware would recognise, so they log themselves.
func (s *Service) logLogin(r *http.Request, name string, status int, note string) {
	if err := s.Record(Entry{Who: name, Via: api.ViaSession, Method: r.Method, Path: r.URL.Path, Status: status,
		Client: s.clientAddr(r), Note: note}); err != nil {
		s.log.Error("audit log", "err", err)
	}
}

func (s *Service) logout(w http.ResponseWriter, r *http.Request) error {
	if _, err := s.caller(r); err != nil {
		return err
	}
	if c, err := r.Cookie(CookieName); err == nil {
		if err := s.endSession(c.Value); err != nil {
			return err
		}
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil, MaxAge: -1})
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Service) whoami(w http.ResponseWriter, r *http.Request) error {
	p, err := s.caller(r)
	if err != nil {
		return err
	}
	csrf := ""
	if p.Via == api.ViaSession {
		if c, err := r.Cookie(CookieName); err == nil {
			if sess, err := s.session(c.Value); err == nil {
				csrf = sess.CSRF
			}
		}
	}
	httpx.WriteJSON(w, http.StatusOK, sessionView(p, csrf))
	return nil
}

func (s *Service) password(w http.ResponseWriter, r *http.Request) error {
	p, err := s.caller(r)
	if err != nil {
		return err
	}
	var req struct {
		Old string `json:"old"`
		New string `json:"new"`
	}
	if err := httpx.Decode(w, r, &req); err != nil {
		return err
	}
	if p.Name == AdminName {
		return httpx.BadRequest("name", "the admin token is not a password; replace <data>/admin.token to change it")
	}
	if wait, err := s.limiter.Wait(p.Name, s.clientAddr(r)); err != nil {
		return fmt.Errorf("login limits: %w", err)
	} else if wait > 0 {
		return &httpx.Error{Status: http.StatusTooManyRequests, Msg: "too many failed attempts; try later"}
	}
	if err := s.SetPassword(p.Name, req.Old, req.New); err != nil {
		if errors.Is(err, ErrPassword) {
			s.loginFailed(p.Name, s.clientAddr(r))
			return &httpx.Error{Status: http.StatusForbidden, Field: "old", Msg: "the old password is wrong"}
		}
		return fieldErr(err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// fieldErr turns validation and lookup errors into answers.
func fieldErr(err error) error {
	if e := httpx.FromValidation(err); e != nil {
		return e
	}
	switch {
	case errors.Is(err, ErrUnknown):
		return &httpx.Error{Status: http.StatusNotFound, Msg: err.Error()}
	case errors.Is(err, ErrExists):
		return &httpx.Error{Status: http.StatusConflict, Field: "name", Msg: err.Error()}
	}
	return err
}

func (s *Service) listAccounts(w http.ResponseWriter, r *http.Request, _ api.Principal) error {
	as, err := s.Accounts()
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, as)
	return nil
}

func (s *Service) createAccount(w http.ResponseWriter, r *http.Request, _ api.Principal) error {
	var req NewAccount
	if err := httpx.Decode(w, r, &req); err != nil {
		return err
	}
	a, err := s.Create(req)
	if err != nil {
		return fieldErr(err)
	}
	httpx.WriteJSON(w, http.StatusCreated, a)
	return nil
}

func (s *Service) updateAccount(w http.ResponseWriter, r *http.Request, _ api.Principal) error {
	var req Change
	if err := httpx.Decode(w, r, &req); err != nil {
		return err
	}
	a, err := s.Update(r.PathValue("name"), req)
	if err != nil {
		return fieldErr(err)
	}
	httpx.WriteJSON(w, http.StatusOK, a)
	return nil
}

func (s *Service) deleteAccount(w http.ResponseWriter, r *http.Request, _ api.Principal) error {
	if err := s.Delete(r.PathValue("name")); err != nil {
		return fieldErr(err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Service) listTokens(w http.ResponseWriter, r *http.Request) error {
	p, err := s.caller(r)
	if err != nil {
		return err
	}
	owner := p.Name
	if p.Admin {
		owner = r.URL.Query().Get("owner")
	}
	ts, err := s.Tokens(owner)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, ts)
	return nil
}

func (s *Service) createToken(w http.ResponseWriter, r *http.Request) error {
	p, err := s.caller(r)
	if err != nil {
		return err
	}
	if p.Via == api.ViaToken {
		// A leaked script token must not mint more of itself.
		return &httpx.Error{Status: http.StatusForbidden, Msg: "API tokens are made from a login, not from another token"}
	}
	var req NewToken
	if err := httpx.Decode(w, r, &req); err != nil {
		return err
	}
	t, secret, err := s.CreateToken(p, req)
	if err != nil {
		return fieldErr(err)
	}
	httpx.WriteJSON(w, http.StatusCreated, struct {
		Token
		Secret string `json:"token"`
	}{t, secret})
	return nil
}

func (s *Service) revokeToken(w http.ResponseWriter, r *http.Request) error {
	p, err := s.caller(r)
	if err != nil {
		return err
	}
	owner := p.Name
	if p.Admin {
		owner = ""
	}
	ok, err := s.RevokeToken(owner, r.PathValue("id"))
	if err != nil {
		return err
	}
	if !ok {
		return &httpx.Error{Status: http.StatusNotFound, Msg: "no token " + r.PathValue("id")}
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Service) audit(w http.ResponseWriter, r *http.Request, _ api.Principal) error {
	q := r.URL.Query()
	before, err := strconv.ParseUint(q.Get("before"), 10, 64)
	if q.Get("before") != "" && err != nil {
		return httpx.BadRequest("before", "before must be an entry number")
	}
	limit := 200
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > 1000 {
			return httpx.BadRequest("limit", "limit must be 1 to 1000")
		}
	}
	es, err := s.AuditLog(q.Get("who"), before, limit)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, es)
	return nil
}
