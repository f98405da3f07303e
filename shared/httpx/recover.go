package httpx

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
)

// Recover answers a panic in next with 500 {"error":"internal error"}.
// net/http's own recovery closes the connection without a word, so a
// client (a kiosk's page, an Open311 app) saw a network error and could
// not tell it from an outage. The panic is logged once, with its stack,
// and counted (counted may be nil). A panic with http.ErrAbortHandler is
// a handler aborting its answer on purpose: it is passed on untouched.
// When the handler had already started its answer, the status can no
// longer change; the connection is then aborted, so that a cut-off body
// does not pass for a whole one.
func Recover(next http.Handler, log *slog.Logger, counted func()) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tw := &startWriter{ResponseWriter: w}
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if err, ok := v.(error); ok && errors.Is(err, http.ErrAbortHandler) {
				panic(v)
			}
			if counted != nil {
				counted()
			}
			// The route pattern, not the path: paths can hold a
			// resident's id.
			route := r.Pattern
			if route == "" {
				route = r.Method + " (no route)"
			}
			log.Error("http handler panicked", "route", route, "panic", fmt.Sprint(v),
				"started", tw.started, "stack", string(debug.Stack()))
			if tw.started {
				panic(http.ErrAbortHandler)
			}
			WriteJSON(w, http.StatusInternalServerError, &Error{Msg: "internal error"})
		}()
		next.ServeHTTP(tw, r)
	})
}

// startWriter notes whether the answer has started.
type startWriter struct {
	http.ResponseWriter
	started bool
}

func (s *startWriter) WriteHeader(code int) {
	if code >= 200 { // 1xx answers leave the final status open
		s.started = true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *startWriter) Write(p []byte) (int, error) {
	s.started = true
	return s.ResponseWriter.Write(p)
}

// Flush keeps streaming handlers that assert http.Flusher working.
func (s *startWriter) Flush() {
	s.started = true
	if err := http.NewResponseController(s.ResponseWriter).Flush(); err != nil {
		return // the connection cannot flush; the handler's next write will fail too
	}
}

// Unwrap lets http.ResponseController reach the connection (deadlines,
// flushes, hijacking).
func (s *startWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }
