package operators

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"linli/hub/api"
)

// Entry is one operator write in the audit log.
type Entry struct {
	Seq    uint64          `json:"seq"`
	Time   time.Time       `json:"time"`
	Who    string          `json:"who"` // "" for credentials that did not check out
	Role   string          `json:"role,omitempty"`
	Via    string          `json:"via,omitempty"`
	Method string          `json:"method"`
	Path   string          `json:"path"`
	Status int             `json:"status"`
	Client string          `json:"client,omitempty"`
	Body   json.RawMessage `json:"body,omitempty"` // the request, secrets redacted
	Note   string          `json:"note,omitempty"`
}

// auditBody bounds what is read ahead of a handler and kept of a body.
const (
	auditRead = 1<<20 + 1 // the largest API body (an access list) and one byte
	auditKeep = 2048
)

// Audit wraps the API so that every write (any method but GET, HEAD,
// OPTIONS) made with credentials is logged with who, when, what and the
// answer's status — refused ones too, which is how probing shows up.
// Anonymous writes (device enrollment, logins, which log themselves) are
// not operator writes and pass through.
//
// Audit authenticates each request once (api.WithPrincipal) before
// anything else looks at it; the API behind it reads that outcome from the
// request's context rather than looking the credentials up again.
func (s *Service) Audit(next http.Handler) http.Handler {
	return api.WithPrincipal(s, s.auditWrites(next))
}

func (s *Service) auditWrites(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet || r.Method == http.MethodHead || r.Method == http.MethodOptions || !hasCredentials(r) {
			next.ServeHTTP(w, r)
			return
		}
		var body []byte
		if r.Body != nil {
			var err error
			body, err = io.ReadAll(io.LimitReader(r.Body, auditRead))
			if err != nil {
				http.Error(w, `{"error":"could not read the request"}`, http.StatusBadRequest)
				return
			}
			r.Body = struct {
				io.Reader
				io.Closer
			}{io.MultiReader(bytes.NewReader(body), r.Body), r.Body}
		}
		p, authErr, ok := api.PrincipalFromContext(r.Context())
		if !ok {
			p, authErr = s.Authenticate(r)
		}
		if p.Name == "" && authErr == nil {
			next.ServeHTTP(w, r)
			return
		}
		rec := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(rec, r)
		e := Entry{Who: p.Name, Role: p.Role, Via: p.Via, Method: r.Method, Path: r.URL.Path, Status: rec.code,
			Client: s.clientAddr(r), Body: redact(r.Header.Get("Content-Type"), body)}
		if authErr != nil {
			e.Note = authErr.Error()
		}
		if err := s.Record(e); err != nil {
			s.log.Error("audit log", "err", err, "who", e.Who, "path", e.Path)
		}
	})
}

func hasCredentials(r *http.Request) bool {
	if r.Header.Get("Authorization") != "" {
		return true
	}
	if c, err := r.Cookie(CookieName); err == nil && c.Value != "" {
		return true
	}
	return strings.HasPrefix(r.URL.Path, "/open311/")
}

// Record appends an entry, numbering and timing it.
func (s *Service) Record(e Entry) error {
	if e.Time.IsZero() {
		e.Time = s.stamp()
	}
	if _, err := s.st.AppendAudit(e); err != nil {
		return fmt.Errorf("append audit entry: %w", err)
	}
	return nil
}

// AuditLog returns up to limit entries before seq (0: the newest), newest
// first, of who ("" for everyone).
func (s *Service) AuditLog(who string, before uint64, limit int) ([]Entry, error) {
	out, err := s.st.AuditLog(who, before, limit)
	if err != nil {
		return nil, fmt.Errorf("read audit log: %w", err)
	}
	if out == nil {
		out = []Entry{}
	}
	return out, nil
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		return nil // maps of strings and numbers always marshal
	}
	return b
}

// statusWriter remembers the status of an answer. It unwraps, so
// http.ResponseController still reaches the connection's Flusher.
type statusWriter struct {
	http.ResponseWriter
	code  int
	wrote bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.code, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
