package httpx_test

import (
	"errors"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"linli/shared/httpx"
	"linli/shared/test/testkit"
)

func TestRecoverAnswersAPanicWith500(t *testing.T) {
	var idx []int
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		// wantAnswer: the client gets a whole 500 JSON answer; otherwise
		// the connection is aborted.
		wantAnswer bool
		wantCount  int64
		wantLogged bool
	}{
		{"index out of range", func(http.ResponseWriter, *http.Request) { _ = idx[3] }, true, 1, true},
		{"panic with an error", func(http.ResponseWriter, *http.Request) { panic(errors.New("boom")) }, true, 1, true},
		{"panic(nil)", func(http.ResponseWriter, *http.Request) { panic(nil) }, true, 1, true},
		{"after the answer started", func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusOK)
			if _, err := io.WriteString(w, `[{"id":`); err != nil {
				t.Error(err)
			}
			w.(http.Flusher).Flush()
			panic("half-way")
		}, false, 1, true},
		{"http.ErrAbortHandler passes through", func(http.ResponseWriter, *http.Request) { panic(http.ErrAbortHandler) }, false, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs := &testkit.SyncBuffer{}
			var panics atomic.Int64
			mux := http.NewServeMux()
			mux.Handle("GET /api/v1/reports/{id}", tc.handler)
			srv := httptest.NewUnstartedServer(httpx.Recover(mux, slog.New(slog.NewJSONHandler(logs, nil)), func() { panics.Add(1) }))
			srv.Config.ErrorLog = log.New(io.Discard, "", 0)
			srv.Start()
			t.Cleanup(srv.Close)

			resp, err := http.Get(srv.URL + "/api/v1/reports/R123-secret")
			var body []byte
			if err == nil {
				body, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			if tc.wantAnswer {
				if err != nil {
					t.Fatalf("client got %v, want a 500 answer", err)
				}
				if resp.StatusCode != 500 || string(body) != `{"error":"internal error"}`+"\n" ||
					!strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
					t.Fatalf("got %d %q (%s), want 500 {\"error\":\"internal error\"} as JSON", resp.StatusCode, body, resp.Header.Get("Content-Type"))
				}
			} else if err == nil {
				t.Fatalf("client got a whole answer %d %q, want the connection aborted", resp.StatusCode, body)
			}
			if got := panics.Load(); got != tc.wantCount {
				t.Errorf("counted %d panics, want %d", got, tc.wantCount)
			}
			out := logs.String()
			if n := strings.Count(out, "http handler panicked"); tc.wantLogged && n != 1 || !tc.wantLogged && n != 0 {
				t.Errorf("logged %d times, want logged=%v:\n%s", n, tc.wantLogged, out)
			}
			if tc.wantLogged && (!strings.Contains(out, `"stack":"goroutine`) || !strings.Contains(out, `"route":"GET /api/v1/reports/{id}"`)) {
				t.Errorf("log has no stack or route:\n%s", out)
			}
			if strings.Contains(out, "R123-secret") {
				t.Errorf("log shows the request path (a resident id may be in it):\n%s", out)
			}
		})
	}
}

// A handler that does not panic is untouched, streaming included.
func TestRecoverPassesAnswersThrough(t *testing.T) {
	var panics atomic.Int64
	srv := httptest.NewServer(httpx.Recover(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Test", "1")
		w.WriteHeader(http.StatusCreated)
		if err := http.NewResponseController(w).Flush(); err != nil {
			t.Errorf("flush through the middleware: %v", err)
		}
		if _, err := io.WriteString(w, "ok"); err != nil {
			t.Error(err)
		}
	}), nil, func() { panics.Add(1) }))
	t.Cleanup(srv.Close)
	resp, err := http.Post(srv.URL, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 201 || string(body) != "ok" || resp.Header.Get("X-Test") != "1" || panics.Load() != 0 {
		t.Fatalf("got %d %q %v, header %q, %d panics", resp.StatusCode, body, err, resp.Header.Get("X-Test"), panics.Load())
	}
}
