package kiosk

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"linli/edge/api"
	"linli/edge/outbox"
	"linli/shared/test/edgetest"
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
	ob, _, err := edgetest.OpenLog(t, t.TempDir(), outbox.Options{Device: "edge-1", RetentionInterval: time.Hour})
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
