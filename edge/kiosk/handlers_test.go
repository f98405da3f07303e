package kiosk

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"linli/edge/api"
	"linli/edge/outbox"
)

type offline struct{}

func (offline) Connected() bool     { return false }
func (offline) LastSync() time.Time { return time.Time{} }

// serve mounts k on edge, as the edge program does, and returns the router.
func serve(edge *api.API, k *Handlers) http.Handler {
	k.API = edge
	k.Mount()
	return edge.Handler()
}

// newServer is the edge API of role with the kiosk's routes on a real
// outbox; opts adjust it before it serves.
func newServer(t testing.TB, role string, opts ...func(*Handlers)) (*httptest.Server, *outbox.Log) {
	t.Helper()
	ob, _, err := openLog(t, t.TempDir(), outbox.Options{Device: "edge-1", RetentionInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	k := &Handlers{API: &api.API{Role: role, Log: ob, Sync: offline{}, Registry: prometheus.NewRegistry()}}
	for _, o := range opts {
		o(k)
	}
	srv := httptest.NewServer(serve(k.API, k))
	t.Cleanup(func() {
		srv.Close()
		if err := ob.Close(); err != nil {
			t.Error(err)
		}
	})
	return srv, ob
}

func post(t *testing.T, url, body string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if len(data) > 0 {
		if err := json.Unmarshal(data, &out); err != nil {
			t.Fatalf("answer %q is not a JSON object: %v", data, err)
		}
	}
	return resp.StatusCode, out
}
