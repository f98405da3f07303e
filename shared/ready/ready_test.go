package ready

import (
	"encoding/json"
	"net/http/httptest"
	"reflect"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

func openDB(t *testing.T) *badger.DB {
	t.Helper()
	db, err := badger.Open(badger.DefaultOptions(t.TempDir()).WithLogger(nil).WithSyncWrites(true))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Error(err)
		}
	})
	return db
}

func probeValue(t *testing.T, db *badger.DB) string {
	t.Helper()
	var v []byte
	if err := db.View(func(txn *badger.Txn) error {
		it, err := txn.Get(probeKey)
		if err != nil {
			return err
		}
		v, err = it.ValueCopy(nil)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return string(v)
}

// The probe writes at most once per Every whatever the request rate, and
// a closed store is a reason.
func TestStoreProbeWritesAtMostOncePerInterval(t *testing.T) {
	db := openDB(t)
	t0 := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	now := t0
	p := &StoreProbe{DB: func() *badger.DB { return db }, Now: func() time.Time { return now }}
	for _, step := range []struct {
		advance time.Duration
		want    time.Time // the time the stored probe value says
	}{
		{0, t0},
		{500 * time.Millisecond, t0},
		{499 * time.Millisecond, t0},
		{time.Millisecond, t0.Add(time.Second)},
		{-time.Hour, t0.Add(-time.Hour + time.Second)}, // a clock stepped back probes again
	} {
		now = now.Add(step.advance)
		if r := p.Check(); r != (Result{}) {
			t.Fatalf("at %v: %+v", now, r)
		}
		if got, want := probeValue(t, db), step.want.Format(time.RFC3339Nano); got != want {
			t.Errorf("at %v: probe written at %s, want %s", now, got, want)
		}
	}
	closed := openDB(t)
	if err := closed.Close(); err != nil {
		t.Fatal(err)
	}
	p = &StoreProbe{DB: func() *badger.DB { return closed }}
	if got := p.Check(); got.Reason != "store: closed" {
		t.Errorf("closed store: %+v, want reason store: closed", got)
	}
}

func TestHandler(t *testing.T) {
	ok := func() Result { return Result{} }
	warn := func() Result { return Result{Warning: "offline: x"} }
	bad := func() Result { return Result{Reason: "store: closed"} }
	for _, tc := range []struct {
		name   string
		checks []Check
		code   int
		want   Answer
	}{
		{"all fine", []Check{ok, ok}, 200, Answer{Ready: true}},
		{"warning only", []Check{ok, warn}, 200, Answer{Ready: true, Warnings: []string{"offline: x"}}},
		{"a reason", []Check{bad, warn}, 503, Answer{Reasons: []string{"store: closed"}, Warnings: []string{"offline: x"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			Handler(tc.checks...)(rec, httptest.NewRequest("GET", "/readyz", nil))
			var got Answer
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			if rec.Code != tc.code || !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %d %+v, want %d %+v", rec.Code, got, tc.code, tc.want)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
		})
	}
}
