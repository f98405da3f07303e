// Package ready answers GET /readyz for the hub and the edge: a list of
// checks, each naming in plain words what keeps the process from serving
// and syncing (a reason, 503) or what it serves around (a warning, 200).
package ready

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Result is what one check found. Reason keeps the process unready;
// Warning is reported but the process stays ready. Both empty: fine.
type Result struct {
	Reason  string
	Warning string
}

// Check is one readiness condition. It must be cheap: probes call every
// check on each request.
type Check func() Result

// Answer is the body of /readyz.
type Answer struct {
	Ready    bool     `json:"ready"`
	Reasons  []string `json:"reasons,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
}

// Evaluate runs checks in order.
func Evaluate(checks ...Check) Answer {
	a := Answer{Ready: true}
	for _, c := range checks {
		r := c()
		if r.Reason != "" {
			a.Reasons = append(a.Reasons, r.Reason)
		}
		if r.Warning != "" {
			a.Warnings = append(a.Warnings, r.Warning)
		}
	}
	a.Ready = len(a.Reasons) == 0
	return a
}

// Handler answers 200 when every check passes and 503 with
// {"reasons":[…]} when one does not; warnings ride along either way.
func Handler(checks ...Check) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		a := Evaluate(checks...)
		code := http.StatusOK
		if !a.Ready {
			code = http.StatusServiceUnavailable
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(code)
		if err := json.NewEncoder(w).Encode(a); err != nil {
			return // the prober went away
		}
	}
}

// probeKey is the one key the store probe rewrites; no other prefix of
// the hub or the edge starts with '!'.
var probeKey = []byte("!ready/probe")

// StoreProbe tells whether a Badger store is open and takes a synced
// write. Probes may come many times a second (a load balancer, systemd,
// Prometheus): the write is done at most once per Every and its result
// reused in between, so readiness never becomes a load of fsyncs.
type StoreProbe struct {
	DB func() *badger.DB // read each time: the hub reopens its store when it purges
	// Write, when set instead of DB, makes the durable write (a store
	// other than Badger: the hub's PostgreSQL).
	Write func(key, val []byte) error
	Every time.Duration    // default 1s
	Now   func() time.Time // default time.Now

	mu   sync.Mutex
	at   time.Time
	last error
}

// Check is the probe as a readiness check, its reason prefixed "store: ".
func (p *StoreProbe) Check() Result {
	if err := p.Err(); err != nil {
		return Result{Reason: "store: " + err.Error()}
	}
	return Result{}
}

// Err is nil when the store took a synced write within the last Every.
func (p *StoreProbe) Err() error {
	now := time.Now
	if p.Now != nil {
		now = p.Now
	}
	every := p.Every
	if every <= 0 {
		every = time.Second
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	t := now()
	if d := t.Sub(p.at); !p.at.IsZero() && d >= 0 && d < every {
		return p.last
	}
	if p.Write != nil {
		p.last = nil
		if err := p.Write(probeKey, []byte(t.UTC().Format(time.RFC3339Nano))); err != nil {
			p.last = fmt.Errorf("not writable: %v", err)
		}
		p.at = t
		return p.last
	}
	p.at, p.last = t, write(p.DB(), t)
	return p.last
}

func write(db *badger.DB, t time.Time) error {
	if db == nil || db.IsClosed() {
		return errors.New("closed")
	}
	// A read-only or full disk, a failed fsync and a closed store all
	// show here as the write the next request would make failing.
	err := db.Update(func(txn *badger.Txn) error {
		return txn.Set(probeKey, []byte(t.UTC().Format(time.RFC3339Nano)))
	})
	switch {
	case errors.Is(err, badger.ErrDBClosed):
		return errors.New("closed")
	case err != nil:
		return fmt.Errorf("not writable: %v", err)
	}
	return nil
}

// KeyPrefixes lists the key the store probe writes, in the hub's store
// and in an edge's: no other package's key may start with it or be a
// prefix of it (a test checks).
func KeyPrefixes() []string { return []string{string(probeKey)} }
