package lease_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"linli/hub/lease"
	"linli/shared/test/poll"
)

// A worker whose take-on of newly assigned sites is slow (Acquired
// blocks for several TTLs) keeps renewing the leases it already holds:
// none of them lapses, none is lost, none moves to another epoch.
func TestSlowTakeOnDoesNotLapseHeldLeases(t *testing.T) {
	url := database(t)
	p := pool(t, url)
	first := sitesN(10)
	more := make([]string, 20)
	for i := range more {
		more[i] = fmt.Sprintf("more-%02d", i)
	}
	var (
		mu    sync.Mutex
		sites = first
		lost  []string
	)
	gate := make(chan struct{})
	opts := fast
	opts.Pool, opts.ID = pool(t, url), "hub-a"
	opts.Sites = func() []string { mu.Lock(); defer mu.Unlock(); return sites }
	opts.Acquired = func(sites []string) map[string]error {
		for _, s := range sites {
			if strings.HasPrefix(s, "more-") {
				<-gate
				break
			}
		}
		return nil
	}
	opts.Lost = func(site string) { mu.Lock(); lost = append(lost, site); mu.Unlock() }
	m := runManager(t, opts)
	var open sync.Once
	release := func() { open.Do(func() { close(gate) }) }
	t.Cleanup(release) // before Run's: a failed test must not leave it blocked
	poll.WaitFor(t, "hub-a to take the first 10 sites", func() bool { return len(m.Held()) == 10 })

	// Twenty more sites to take on, each take-on blocked.
	var blocked time.Time
	if err := p.QueryRow(context.Background(), `SELECT now()`).Scan(&blocked); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	sites = append(append([]string{}, first...), more...)
	mu.Unlock()
	// By the database's clock: the first ten are renewed to expire past
	// three TTLs after the take-on blocked, i.e. renewal went on.
	poll.Eventually(t, 15*time.Second, func() (bool, string) {
		var n int
		if err := p.QueryRow(context.Background(), `SELECT count(*) FROM site_leases
			WHERE site = ANY($1) AND owner = 'hub-a' AND epoch = 1 AND expires_at > $2::timestamptz + $3 * interval '1 millisecond'`,
			first, blocked, 3*opts.TTL.Milliseconds()).Scan(&n); err != nil {
			return false, err.Error()
		}
		mu.Lock()
		defer mu.Unlock()
		if len(lost) > 0 {
			t.Fatalf("sites lost while the take-on was blocked: %v", lost)
		}
		return n == len(first), fmt.Sprintf("%d of the %d held leases renewed past 3 TTLs after the take-on blocked", n, len(first))
	})
	for _, s := range first {
		if e, ok := m.Epoch(s); !ok || e != 1 {
			t.Errorf("site %s: epoch %d held %v while the take-on was blocked, want still held at epoch 1", s, e, ok)
		}
	}
	release()
	poll.WaitFor(t, "hub-a to hold all 30 sites", func() bool { return len(m.Held()) == 30 })
	mu.Lock()
	defer mu.Unlock()
	if len(lost) > 0 {
		t.Fatalf("sites lost: %v", lost)
	}
}

// A site whose lease is lost while its take-on is still loading is
// dropped: never Acquired, never Lost, no longer held; the rest of its
// batch is served.
func TestLeaseLostDuringLoadIsDropped(t *testing.T) {
	url := database(t)
	p := pool(t, url)
	o := newOwners(t)
	loading := make(chan []string, 1)
	gate := make(chan struct{})
	var open sync.Once
	release := func() { open.Do(func() { close(gate) }) }
	opts := fast
	opts.Pool, opts.ID = pool(t, url), "hub-a"
	opts.Sites = func() []string { return sitesN(4) }
	opts.Acquired, opts.Lost = o.acquired("hub-a"), o.lost("hub-a")
	opts.Load = func(sites []string) error {
		select {
		case loading <- sites:
		default:
		}
		<-gate
		return nil
	}
	m := runManager(t, opts)
	t.Cleanup(release)

	var batch []string
	select {
	case batch = <-loading:
	case <-time.After(10 * time.Second):
		t.Fatal("no take-on started within 10 s")
	}
	if len(batch) != 4 {
		t.Fatalf("loading %v, want the 4 sites in one batch", batch)
	}
	// Another worker takes site-02 over while hub-a loads it.
	if _, err := p.Exec(context.Background(), `UPDATE site_leases SET owner = 'hub-z', epoch = epoch + 1,
		expires_at = now() + interval '1 hour' WHERE site = 'site-02'`); err != nil {
		t.Fatal(err)
	}
	poll.WaitFor(t, "hub-a to find site-02's lease gone", func() bool { _, ok := m.Epoch("site-02"); return !ok })
	release()
	poll.WaitFor(t, "hub-a to serve the other 3 sites", func() bool { return o.held()["hub-a"] == 3 })
	if w := o.owner("site-02"); w != "" {
		t.Fatalf("site-02 served by %s after its lease was lost during the take-on", w)
	}
	if _, ok := m.Epoch("site-02"); ok {
		t.Fatal("hub-a holds site-02 again while hub-z's lease is live")
	}
}

// A worker announced (about to join, not yet heartbeating) is listed
// among the district's workers but not live: no site is assigned to it.
func TestAnnouncedWorkerGetsNoSitesUntilLive(t *testing.T) {
	url := database(t)
	p := pool(t, url)
	if err := lease.Announce(context.Background(), p, "hub-new", fast.TTL); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := p.QueryRow(context.Background(), `SELECT count(*) FROM hub_workers WHERE id = 'hub-new'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("announced worker listed %d times (%v), want once", n, err)
	}
	o := newOwners(t)
	a, _ := worker(t, pool(t, url), "hub-a", sitesN(6), o, fast)
	poll.WaitFor(t, "hub-a to serve all 6 sites", func() bool { return o.held()["hub-a"] == 6 })
	if got := len(a.Held()); got != 6 {
		t.Fatalf("hub-a holds %d sites, want all 6 (the announced worker is not live)", got)
	}
	// Announcing again leaves a live worker's heartbeat as it is.
	beat := func() (hb time.Time) {
		if err := p.QueryRow(context.Background(), `SELECT heartbeat FROM hub_workers WHERE id = 'hub-a'`).Scan(&hb); err != nil {
			t.Fatal(err)
		}
		return hb
	}
	before := beat()
	if err := lease.Announce(context.Background(), p, "hub-a", fast.TTL); err != nil {
		t.Fatal(err)
	}
	if after := beat(); after.Before(before) {
		t.Fatalf("hub-a's heartbeat set back from %v to %v by an announce", before, after)
	}
}

// runManager starts a Manager with opts and, when the test ends, cancels
// its Run and waits for it (a clean handover).
func runManager(t *testing.T, opts lease.Options) *lease.Manager {
	t.Helper()
	m, err := lease.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return m
}
