package lease_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	neturl "net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"linli/hub/lease"
	"linli/hub/pgstore"
	"linli/shared/test/netproxy"
	"linli/shared/test/poll"
	"linli/shared/test/testkit"
)

// TestMain stops the tests' PostgreSQL and checks for leaked goroutines;
// run as a worker process (TestSIGKILL), it is that worker instead.
func TestMain(m *testing.M) {
	if workerMain() {
		return
	}
	testkit.PostgresMain(m)
}

// database returns the URL of a new migrated database.
func database(t *testing.T) string {
	t.Helper()
	url := testkit.StartPostgres(t)
	st, err := pgstore.Open(context.Background(), url, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	return url
}

func pool(t *testing.T, url string) *pgxpool.Pool {
	t.Helper()
	p, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// owners is the tests' view of who holds what, from the managers'
// callbacks: a site Acquired while another worker has not reported it
// Lost is two owners at once, which must never happen.
type owners struct {
	t      *testing.T
	mu     sync.Mutex
	by     map[string]string // site → worker
	refuse map[string]bool   // sites whose Acquired fails
}

func newOwners(t *testing.T) *owners {
	return &owners{t: t, by: map[string]string{}, refuse: map[string]bool{}}
}

func (o *owners) acquired(worker string) func([]string) map[string]error {
	return func(sites []string) map[string]error {
		o.mu.Lock()
		defer o.mu.Unlock()
		refused := map[string]error{}
		for _, site := range sites {
			if w, ok := o.by[site]; ok {
				o.t.Errorf("%s acquired site %s while %s still holds it", worker, site, w)
			}
			if o.refuse[site] {
				refused[site] = errors.New("cannot serve it")
				continue
			}
			o.by[site] = worker
		}
		return refused
	}
}

func (o *owners) lost(worker string) func(string) {
	return func(site string) {
		o.mu.Lock()
		defer o.mu.Unlock()
		if o.by[site] != worker {
			o.t.Errorf("%s lost site %s it did not hold (held by %q)", worker, site, o.by[site])
		}
		delete(o.by, site)
	}
}

// held counts the sites each worker holds.
func (o *owners) held() map[string]int {
	o.mu.Lock()
	defer o.mu.Unlock()
	c := map[string]int{}
	for _, w := range o.by {
		c[w]++
	}
	return c
}

func (o *owners) owner(site string) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.by[site]
}

func sitesN(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("site-%02d", i)
	}
	return out
}

// fast are lease timings for tests that wait for expiry.
var fast = lease.Options{TTL: 1500 * time.Millisecond, Renew: 300 * time.Millisecond, Margin: 300 * time.Millisecond}

// worker starts a Manager on its own pool; stop cancels its Run (a clean
// handover) and waits for it.
func worker(t *testing.T, p *pgxpool.Pool, id string, sites []string, o *owners, timing lease.Options) (m *lease.Manager, stop func()) {
	t.Helper()
	opts := timing
	opts.Pool, opts.ID = p, id
	opts.Sites = func() []string { return sites }
	opts.Acquired, opts.Lost = o.acquired(id), o.lost(id)
	m, err := lease.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("%s: Run: %v", id, err)
			}
		})
	}
	t.Cleanup(stop)
	return m, stop
}

// fencedWrite writes a row for site in one transaction that commits only
// if fence lets it: as a store's commit of the site's events does.
func fencedWrite(ctx context.Context, p *pgxpool.Pool, site, writer string, fence func(context.Context, pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, p, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO decisions (site, writer) VALUES ($1, $2)`, site, writer); err != nil {
			return err
		}
		return fence(ctx, tx)
	})
}

// A worker paused past its lease (it stops renewing, and believes it
// still holds the site at epoch 1) has its writes refused once another
// worker took the site at epoch 2, and nothing of them is stored; the new
// owner's writes commit.
func TestStaleOwnerIsFenced(t *testing.T) {
	url := database(t)
	p := pool(t, url)
	ctx := context.Background()
	if _, err := p.Exec(ctx, `CREATE TABLE decisions (site text, writer text)`); err != nil {
		t.Fatal(err)
	}
	// Each its own view: the paused worker, by design, reports nothing.
	oa, ob := newOwners(t), newOwners(t)
	a, _ := worker(t, pool(t, url), "hub-a", []string{"s"}, oa, fast)
	poll.WaitFor(t, "hub-a to take site s", func() bool { e, ok := a.Epoch("s"); return ok && e == 1 })
	if err := fencedWrite(ctx, p, "s", "hub-a", func(ctx context.Context, tx pgx.Tx) error { return a.Fence(ctx, tx, "s") }); err != nil {
		t.Fatalf("hub-a's write while it holds the lease: %v", err)
	}

	thaw := lease.Freeze(a)
	b, _ := worker(t, pool(t, url), "hub-b", []string{"s"}, ob, fast)
	poll.WaitFor(t, "hub-b to take site s at epoch 2", func() bool { e, ok := b.Epoch("s"); return ok && e == 2 })
	if e, ok := a.Epoch("s"); !ok || e != 1 {
		t.Fatalf("paused hub-a: epoch %d held %v, want it still to believe it holds epoch 1", e, ok)
	}

	err := fencedWrite(ctx, p, "s", "hub-a", func(ctx context.Context, tx pgx.Tx) error { return a.Fence(ctx, tx, "s") })
	if !errors.Is(err, lease.ErrFenced) {
		t.Fatalf("stale hub-a's write: %v, want ErrFenced", err)
	}
	for _, tc := range []struct {
		owner string
		epoch int64
	}{{"hub-a", 1}, {"hub-a", 2}, {"hub-b", 1}, {"hub-b", 3}} {
		err := fencedWrite(ctx, p, "s", tc.owner, func(ctx context.Context, tx pgx.Tx) error { return lease.Check(ctx, tx, "s", tc.owner, tc.epoch) })
		if !errors.Is(err, lease.ErrFenced) {
			t.Errorf("write as %s at epoch %d: %v, want ErrFenced", tc.owner, tc.epoch, err)
		}
	}
	if err := fencedWrite(ctx, p, "no-such-site", "hub-b", func(ctx context.Context, tx pgx.Tx) error {
		return lease.Check(ctx, tx, "no-such-site", "hub-b", 1)
	}); !errors.Is(err, lease.ErrFenced) {
		t.Errorf("write to a site nobody leases: %v, want ErrFenced", err)
	}
	if err := fencedWrite(ctx, p, "s", "hub-b", func(ctx context.Context, tx pgx.Tx) error { return b.Fence(ctx, tx, "s") }); err != nil {
		t.Fatalf("hub-b's write as owner: %v", err)
	}
	rows, err := p.Query(ctx, `SELECT writer FROM decisions ORDER BY writer`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"hub-a", "hub-b"}; !slices.Equal(got, want) {
		t.Fatalf("stored writes %v, want %v (hub-a's before its pause, hub-b's; nothing of the fenced ones)", got, want)
	}

	// Thawed, hub-a finds its lease gone and reports it lost.
	thaw()
	poll.WaitFor(t, "thawed hub-a to give site s up", func() bool { _, ok := a.Epoch("s"); return !ok })
	if w := ob.owner("s"); w != "hub-b" {
		t.Fatalf("site s owned by %q, want hub-b", w)
	}
}

// A fenced commit that passed Check holds the lease row until it ends: a
// worker taking the expired lease over waits for it, so the two epochs'
// writes never interleave.
func TestTakeoverWaitsForTheCommitInFlight(t *testing.T) {
	url := database(t)
	p := pool(t, url)
	ctx := context.Background()
	if _, err := p.Exec(ctx, `INSERT INTO site_leases (site, owner, epoch, expires_at) VALUES ('s', 'hub-a', 1, now() + interval '1 second')`); err != nil {
		t.Fatal(err)
	}
	tx, err := p.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if err := lease.Check(ctx, tx, "s", "hub-a", 1); err != nil {
		t.Fatalf("check of a live lease: %v", err)
	}
	o := newOwners(t)
	b, _ := worker(t, pool(t, url), "hub-b", []string{"s"}, o, fast)
	// Past the lease's expiry by the database's clock, hub-b's takeover
	// is still blocked on the row.
	var expired bool
	poll.WaitFor(t, "the lease to expire", func() bool {
		if err := p.QueryRow(ctx, `SELECT expires_at < clock_timestamp() FROM site_leases WHERE site = 's'`).Scan(&expired); err != nil {
			t.Fatal(err)
		}
		return expired
	})
	poll.WaitFor(t, "hub-b's takeover to wait on the lease row", func() bool {
		var n int
		if err := p.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%site_leases%'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n > 0
	})
	if _, ok := b.Epoch("s"); ok {
		t.Fatal("hub-b took site s while hub-a's fenced commit was in flight")
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	poll.WaitFor(t, "hub-b to take site s at epoch 2 after the commit", func() bool { e, ok := b.Epoch("s"); return ok && e == 2 })
}

// Sites spread over the workers, each site held by exactly one; when one
// worker leaves cleanly and another joins, the sites move and every site
// stays held by one worker.
func TestSpreadJoinLeave(t *testing.T) {
	url := database(t)
	sites := sitesN(30)
	o := newOwners(t)
	timing := lease.Options{TTL: 3 * time.Second, Renew: 200 * time.Millisecond, Margin: 500 * time.Millisecond}
	want := func(per map[string]int) {
		t.Helper()
		poll.Eventually(t, 10*time.Second, func() (bool, string) {
			got := o.held()
			return maps.Equal(got, per), fmt.Sprintf("held %v, want %v", got, per)
		})
	}
	_, stopA := worker(t, pool(t, url), "hub-a", sites, o, timing)
	want(map[string]int{"hub-a": 30})
	worker(t, pool(t, url), "hub-b", sites, o, timing)
	worker(t, pool(t, url), "hub-c", sites, o, timing)
	want(map[string]int{"hub-a": 10, "hub-b": 10, "hub-c": 10})
	stopA()
	want(map[string]int{"hub-b": 15, "hub-c": 15})

	// What the managers hold is what the database says.
	p := pool(t, url)
	rows, err := p.Query(context.Background(), `SELECT owner, count(*) FROM site_leases WHERE expires_at > now() GROUP BY owner`)
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		Owner string
		N     int
	}
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[row])
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(got, func(a, b row) int {
		if a.Owner < b.Owner {
			return -1
		}
		return 1
	})
	if want := []row{{"hub-b", 15}, {"hub-c", 15}}; !slices.Equal(got, want) {
		t.Fatalf("live leases by owner %v, want %v", got, want)
	}
}

// A worker cut off from PostgreSQL gives its sites up (Lost) before their
// leases expire, so before any other worker can take them, and within the
// TTL of the cut; the other worker then owns them.
func TestCutOffWorkerLosesItsSitesFirst(t *testing.T) {
	url := database(t)
	u, err := neturl.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	proxy, err := netproxy.Start(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	u.Host = proxy.Addr()

	sites := sitesN(10)
	o := newOwners(t)
	a, _ := worker(t, pool(t, u.String()), "hub-a", sites, o, fast)
	poll.WaitFor(t, "hub-a to take the sites", func() bool { return len(a.Held()) == 10 })
	b, _ := worker(t, pool(t, url), "hub-b", sites, o, fast)
	poll.WaitFor(t, "the two workers to share the sites", func() bool { return len(a.Held()) == 5 && len(b.Held()) == 5 })

	proxy.Cut(netproxy.Blackhole)
	cut := time.Now()
	poll.WaitFor(t, "the cut-off hub-a to give its sites up", func() bool { return len(a.Held()) == 0 })
	if took := time.Since(cut); took >= fast.TTL {
		t.Errorf("hub-a gave its sites up %v after the cut, want within the TTL %v", took, fast.TTL)
	}
	// owners fails the test had hub-b acquired a site before hub-a's Lost.
	poll.WaitFor(t, "hub-b to own every site", func() bool { return len(b.Held()) == 10 })
	proxy.Restore()
}

// A site the worker cannot serve (Acquired fails) is handed back at once
// rather than held unserved, and taken when it can be served.
func TestAcquiredErrorHandsTheLeaseBack(t *testing.T) {
	url := database(t)
	p := pool(t, url)
	o := newOwners(t)
	o.mu.Lock()
	o.refuse["site-01"] = true
	o.mu.Unlock()
	a, _ := worker(t, pool(t, url), "hub-a", sitesN(3), o, fast)
	// The lease row is taken before Acquired runs, so the refused site is
	// live for a moment: wait for the hand-back rather than sample once.
	poll.Eventually(t, 10*time.Second, func() (bool, string) {
		var live bool
		if err := p.QueryRow(context.Background(), `SELECT expires_at > now() FROM site_leases WHERE site = 'site-01'`).Scan(&live); err != nil {
			return false, err.Error()
		}
		_, held := a.Epoch("site-01")
		return len(a.Held()) == 2 && !held && !live, fmt.Sprintf("held %v, site-01 held %v, lease live %v; want the two it can serve and site-01 handed back", a.Held(), held, live)
	})
	o.mu.Lock()
	delete(o.refuse, "site-01")
	o.mu.Unlock()
	poll.WaitFor(t, "hub-a to take site-01 once it can serve it", func() bool { _, ok := a.Epoch("site-01"); return ok })
}

// The sites to share are those of the devices enrolled in the database,
// whichever worker enrolled them, and the site plans'.
func TestEnrolledSites(t *testing.T) {
	url := database(t)
	p := pool(t, url)
	sites := lease.EnrolledSites(p, []string{"plan-only", "s2"}, slog.New(slog.DiscardHandler))
	if got, want := sites(), []string{"plan-only", "s2"}; !slices.Equal(got, want) {
		t.Fatalf("sites %v, want %v", got, want)
	}
	if _, err := p.Exec(context.Background(), `INSERT INTO enrolled_devices (id, site, role, public_key) VALUES
		('k1', 's1', 'kiosk', '\x00'), ('k2', 's1', 'kiosk', '\x00'), ('g1', 's2', 'gateway', '\x00')`); err != nil {
		t.Fatal(err)
	}
	if got, want := sites(), []string{"plan-only", "s1", "s2"}; !slices.Equal(got, want) {
		t.Fatalf("sites %v, want %v", got, want)
	}
	p.Close()
	if got, want := sites(), []string{"plan-only", "s1", "s2"}; !slices.Equal(got, want) {
		t.Fatalf("sites after a failed read %v, want the last list %v", got, want)
	}
}
