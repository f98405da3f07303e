// Package edgetest holds what the edge packages' tests share: the edge's
// store and outbox opened as the edge program opens them, and a JSON POST
// to an edge API served on loopback.
package edgetest

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"linli/edge/outbox"
	"linli/edge/store"
)

// stores are the edge stores the tests opened, by dir.
var stores sync.Map

// OpenLog opens the edge's store in dir and the outbox in it, as the edge
// program does. A store the test opened on dir before is closed first
// (its log closed first, as at a restart); the last one closes when the
// test ends, after the outbox (whose close the caller registers later,
// or defers).
func OpenLog(t testing.TB, dir string, opts outbox.Options) (*outbox.Log, *badger.DB, error) {
	t.Helper()
	if old, ok := stores.LoadAndDelete(dir); ok {
		if err := old.(*store.Store).Close(); err != nil {
			return nil, nil, err
		}
	}
	st, err := store.Open(store.Options{Dir: dir, GCInterval: time.Hour})
	if err != nil {
		return nil, nil, err
	}
	stores.Store(dir, st)
	t.Cleanup(func() {
		stores.CompareAndDelete(dir, st)
		if err := st.Close(); err != nil {
			t.Error(err)
		}
	})
	ob, err := outbox.Open(st.DB(), opts)
	return ob, st.DB(), err
}

// PostJSON posts body to url as JSON and returns the status and the
// answer's JSON object (nil for an empty answer).
func PostJSON(t testing.TB, url, body string) (int, map[string]any) {
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
