// Package lease gives each site one owning hub worker at a time, through a
// lease row in PostgreSQL whose fencing epoch every commit of the site's
// writes checks.
package lease

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Defaults: a SIGKILLed worker's last heartbeat is at most Renew old;
// the other workers see it gone TTL after that heartbeat, when its
// leases have expired too, and take its sites at once (the balancing
// round wakes for that moment), so within TTL plus the take-on.
const (
	DefaultTTL    = 6 * time.Second
	DefaultRenew  = 2 * time.Second
	DefaultMargin = time.Second
)

// DefaultBatch is how many sites one Load and Acquired call takes on.
const DefaultBatch = 100

// ErrFenced is returned by Check when the committing worker no longer
// holds the site's lease at the epoch it names: its writes must not
// commit.
var ErrFenced = errors.New("site lease is not held")

// Options configure a Manager.
type Options struct {
	Pool *pgxpool.Pool
	// ID is this worker's id, unique among the workers on the database.
	ID string
	// Sites lists every site there is (the registry's and the site
	// plans'); it is called at every tick.
	Sites func() []string
	// TTL is how long a lease lasts past its last renewal, by the
	// database's clock (default 6 s); a worker not seen for TTL is taken
	// for gone.
	TTL time.Duration
	// Renew is how often the worker heartbeats, renews and rebalances
	// (default TTL/3).
	Renew time.Duration
	// Margin is how long before a lease's expiry a worker that could not
	// renew it gives it up (default TTL/6).
	Margin time.Duration
	// Load, optional, reads what serving sites just acquired needs (their
	// state as the store has it), a batch of up to Batch sites at a time.
	// Renewal never waits for it, and neither does Lost: a site whose
	// lease is lost meanwhile is dropped without Acquired. An error hands
	// the whole batch back, to be tried again at a later round.
	Load func(sites []string) error
	// Acquired starts serving a batch of sites just acquired and loaded
	// (those still held); it returns the sites it cannot serve now, with
	// why, and those are handed back. Lost is called when the worker
	// gives up or finds gone a site it serves, and returns only once
	// nothing more of the site may be acked. Acquired and Lost run on
	// one goroutine of their own, in the order the leases came and went;
	// renewal never waits for them (the fencing epoch, not Lost, keeps a
	// lost site's writes out), but keep them short: a Lost waits behind
	// the Acquired in progress.
	Acquired func(sites []string) map[string]error
	Lost     func(site string)
	// Batch is the most sites one Load and Acquired take (default
	// DefaultBatch).
	Batch  int
	Logger *slog.Logger
}

// Manager holds one worker's leases: it heartbeats, takes its fair share
// of the sites over the live workers (Assign), renews what it holds and
// hands over what another worker should own.
//
// Three goroutines share the work, so that none waits for another's slow
// part: keep renews and heartbeats every Renew; balance takes and hands
// over sites and loads those taken; the callbacks goroutine runs
// Acquired and Lost in order.
type Manager struct {
	opts Options
	log  *slog.Logger

	mu   sync.Mutex
	held map[string]holding

	// cbs is the callbacks' queue; served, the callbacks goroutine's
	// own, are the sites Acquired serves.
	cbMu   sync.Mutex
	cbs    []callback
	cbWake chan struct{}
	served map[string]bool

	frozen atomic.Bool // tests: a process stopped in its tracks
}

type holding struct {
	epoch int64
	// until is this worker's own clock's bound for the lease: the start
	// of the last statement that set its expiry, plus TTL, minus Margin.
	// The database set the expiry later than that start, by its own clock
	// now() plus TTL, so the lease outlives until by at least Margin
	// whatever the two clocks read.
	until time.Time
}

// callback is one turn of the callbacks goroutine: Lost for the sites of
// lost that it serves, or Acquired for the sites of serve still held at
// their epoch. done, if set, receives the sites refused.
type callback struct {
	lost  []string
	serve []taken
	done  chan map[string]error
}

type taken struct {
	Site  string
	Epoch int64
}

// New checks opts and fills in the defaults.
func New(opts Options) (*Manager, error) {
	if opts.Pool == nil {
		return nil, errors.New("lease: no pool")
	}
	if opts.ID == "" {
		return nil, errors.New("lease: no worker id")
	}
	if opts.Sites == nil {
		return nil, errors.New("lease: no sites")
	}
	if opts.TTL <= 0 {
		opts.TTL = DefaultTTL
	}
	if opts.Renew <= 0 {
		opts.Renew = opts.TTL / 3
	}
	if opts.Margin <= 0 {
		opts.Margin = opts.TTL / 6
	}
	if opts.Renew+opts.Margin >= opts.TTL {
		return nil, fmt.Errorf("lease: renew every %v with a margin of %v leaves no time within a TTL of %v", opts.Renew, opts.Margin, opts.TTL)
	}
	if opts.Batch <= 0 {
		opts.Batch = DefaultBatch
	}
	if opts.Load == nil {
		opts.Load = func([]string) error { return nil }
	}
	if opts.Acquired == nil {
		opts.Acquired = func([]string) map[string]error { return nil }
	}
	if opts.Lost == nil {
		opts.Lost = func(string) {}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Manager{opts: opts, log: opts.Logger, held: map[string]holding{},
		cbWake: make(chan struct{}, 1), served: map[string]bool{}}, nil
}

// ID is the worker's id.
func (m *Manager) ID() string { return m.opts.ID }

// Held returns the sites held, with their epochs.
func (m *Manager) Held() map[string]int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]int64, len(m.held))
	for s, h := range m.held {
		out[s] = h.epoch
	}
	return out
}

// Epoch is the epoch at which the worker holds site; ok is false if it
// does not.
func (m *Manager) Epoch(site string) (epoch int64, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	h, ok := m.held[site]
	return h.epoch, ok
}

// Fence is Check for this worker at the epoch it holds site: the call a
// PostgreSQL commit of the site's writes makes inside its transaction.
func (m *Manager) Fence(ctx context.Context, tx pgx.Tx, site string) error {
	epoch, ok := m.Epoch(site)
	if !ok {
		return fmt.Errorf("%w: site %s: worker %s does not hold it", ErrFenced, site, m.opts.ID)
	}
	return Check(ctx, tx, site, m.opts.ID, epoch)
}

// Check fences a commit: called inside the transaction that writes a
// site's events, decisions or downlink, it returns ErrFenced unless owner
// still holds the site's lease at epoch and the lease is unexpired by the
// database's clock. It locks the lease row (FOR SHARE) until the
// transaction ends, so a worker taking the site over waits for this commit
// and sees all of it: the writes of two epochs never interleave. Any
// error means the transaction must roll back.
func Check(ctx context.Context, tx pgx.Tx, site, owner string, epoch int64) error {
	var (
		holder string
		held   int64
		live   bool
	)
	// clock_timestamp, not now(): now() is when the transaction began,
	// and a long one would check against a past instant.
	err := tx.QueryRow(ctx, `SELECT owner, epoch, expires_at > clock_timestamp()
		FROM site_leases WHERE site = $1 FOR SHARE`, site).Scan(&holder, &held, &live)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("%w: site %s has no lease", ErrFenced, site)
	case err != nil:
		return fmt.Errorf("check lease of site %s: %w", site, err)
	case holder != owner || held != epoch:
		return fmt.Errorf("%w: site %s is %s's at epoch %d, not %s's at %d", ErrFenced, site, holder, held, owner, epoch)
	case !live:
		return fmt.Errorf("%w: site %s: the lease of %s at epoch %d expired", ErrFenced, site, owner, epoch)
	}
	return nil
}

// Run heartbeats and keeps the worker's share of leases until ctx ends,
// then hands every site over (Lost, then released at once, so another
// worker takes it at its next round rather than after the TTL) and
// removes the worker from the live ones. It returns nil after a clean
// handover.
func (m *Manager) Run(ctx context.Context) error {
	cbCtx, stopCallbacks := context.WithCancel(context.Background())
	cbDone := make(chan struct{})
	go func() { defer close(cbDone); m.callbacks(cbCtx) }()
	defer func() { stopCallbacks(); <-cbDone }()
	keepDone := make(chan struct{})
	go func() { defer close(keepDone); m.keep(ctx) }()
	m.balanceLoop(ctx)
	<-keepDone
	return m.leave()
}

// keep renews and heartbeats every Renew, or sooner if a lease's bound
// comes first, so a worker cut off from the database gives it up in time
// even when each try fails at once. Nothing else runs on it: taking
// sites on, however long, never delays a renewal.
func (m *Manager) keep(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		if !m.frozen.Load() {
			m.loseExpired()
			m.renewAndBeat(ctx)
			m.loseExpired()
		}
		timer.Reset(m.wait())
	}
}

// wait is the time to the next renewal: Renew, or sooner if a lease's
// bound comes first.
func (m *Manager) wait() time.Duration {
	d := m.opts.Renew
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, h := range m.held {
		d = min(d, time.Until(h.until))
	}
	return max(d, time.Millisecond)
}

// loseExpired gives up the leases whose bound has passed: the database
// may hand them to another worker soon.
func (m *Manager) loseExpired() {
	now := time.Now()
	var gone []taken
	m.mu.Lock()
	for s, h := range m.held {
		if !now.Before(h.until) {
			gone = append(gone, taken{s, h.epoch})
		}
	}
	m.mu.Unlock()
	if len(gone) > 0 {
		m.log.Warn("site leases not renewed in time; given up", "worker", m.opts.ID, "sites", len(gone))
		m.lose(gone, false)
	}
}

// lose forgets sites held at their epochs and queues Lost for them;
// wait waits for the Lost calls to return.
func (m *Manager) lose(sites []taken, wait bool) {
	var names []string
	m.mu.Lock()
	for _, t := range sites {
		if h, ok := m.held[t.Site]; ok && h.epoch == t.Epoch {
			delete(m.held, t.Site)
			names = append(names, t.Site)
		}
	}
	// Queued under mu: a site taken again is queued for Acquired only
	// after its Lost.
	var done chan map[string]error
	if wait {
		done = make(chan map[string]error, 1)
	}
	slices.Sort(names)
	m.enqueue(callback{lost: names, done: done})
	m.mu.Unlock()
	if wait {
		<-done
	}
}

func (m *Manager) enqueue(c callback) {
	m.cbMu.Lock()
	m.cbs = append(m.cbs, c)
	m.cbMu.Unlock()
	select {
	case m.cbWake <- struct{}{}:
	default:
	}
}

// callbacks runs the queued Acquired and Lost calls in order until ctx
// ends and the queue is empty.
func (m *Manager) callbacks(ctx context.Context) {
	for {
		m.cbMu.Lock()
		q := m.cbs
		m.cbs = nil
		m.cbMu.Unlock()
		for _, c := range q {
			var refused map[string]error
			if c.serve != nil {
				refused = m.serve(c.serve)
			} else {
				for _, s := range c.lost {
					if m.served[s] {
						delete(m.served, s)
						m.log.Info("site lease lost", "worker", m.opts.ID, "site", s)
						m.opts.Lost(s)
					}
				}
			}
			if c.done != nil {
				c.done <- refused
			}
		}
		if len(q) > 0 {
			continue
		}
		select {
		case <-m.cbWake:
		case <-ctx.Done():
			return
		}
	}
}

// serve calls Acquired for the sites of batch still held at their epoch;
// a site lost meanwhile is dropped here, its Lost queued behind.
func (m *Manager) serve(batch []taken) map[string]error {
	var sites []string
	m.mu.Lock()
	for _, t := range batch {
		if h, ok := m.held[t.Site]; ok && h.epoch == t.Epoch {
			sites = append(sites, t.Site)
		}
	}
	m.mu.Unlock()
	if len(sites) == 0 {
		return nil
	}
	refused := m.opts.Acquired(sites)
	for _, s := range sites {
		if err, no := refused[s]; no {
			m.log.Error("site lease acquired but the site cannot be served; handed back", "worker", m.opts.ID, "site", s, "err", err)
			continue
		}
		m.served[s] = true
		m.log.Info("site lease acquired", "worker", m.opts.ID, "site", s)
	}
	return refused
}

// renewAndBeat renews the leases held, then marks the worker live: in
// that order, so a worker seen gone (its heartbeat older than the TTL)
// has had its renewed leases expire too.
func (m *Manager) renewAndBeat(ctx context.Context) {
	// No statement may outlast the earliest bound: a worker blocked on an
	// unreachable database must still give its leases up in time.
	ctx, cancel := context.WithDeadline(ctx, time.Now().Add(m.wait()))
	defer cancel()
	if err := m.renew(ctx); err != nil {
		m.log.Warn("lease renewal failed", "worker", m.opts.ID, "err", err)
		return
	}
	m.beat(ctx)
}

// beat writes the worker's heartbeat.
func (m *Manager) beat(ctx context.Context) {
	if _, err := m.opts.Pool.Exec(ctx, `INSERT INTO hub_workers (id, heartbeat) VALUES ($1, now())
		ON CONFLICT (id) DO UPDATE SET heartbeat = now()`, m.opts.ID); err != nil {
		m.log.Warn("lease heartbeat failed", "worker", m.opts.ID, "err", err)
	}
}

func ms(d time.Duration) int64 { return d.Milliseconds() }

// renew extends every lease held; one the database no longer has as this
// worker's at its epoch, unexpired, is lost.
func (m *Manager) renew(ctx context.Context) error {
	held := m.Held()
	if len(held) == 0 {
		return nil
	}
	sites := slices.Sorted(maps.Keys(held))
	epochs := make([]int64, len(sites))
	for i, s := range sites {
		epochs[i] = held[s]
	}
	start := time.Now()
	rows, err := m.opts.Pool.Query(ctx, `UPDATE site_leases l SET expires_at = now() + $2 * interval '1 millisecond'
		FROM unnest($3::text[], $4::bigint[]) AS h(site, epoch)
		WHERE l.site = h.site AND l.epoch = h.epoch AND l.owner = $1 AND l.expires_at > now()
		RETURNING l.site`, m.opts.ID, ms(m.opts.TTL), sites, epochs)
	if err != nil {
		return fmt.Errorf("renew: %w", err)
	}
	renewed, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("renew: %w", err)
	}
	until := start.Add(m.opts.TTL - m.opts.Margin)
	ok := make(map[string]bool, len(renewed))
	for _, s := range renewed {
		ok[s] = true
	}
	var gone []taken
	m.mu.Lock()
	for i, s := range sites {
		h, still := m.held[s]
		if !still || h.epoch != epochs[i] {
			continue // handed over or taken again meanwhile
		}
		if ok[s] {
			h.until = until
			m.held[s] = h
		} else {
			gone = append(gone, taken{s, epochs[i]})
		}
	}
	m.mu.Unlock()
	if len(gone) > 0 {
		m.log.Warn("site leases found taken or expired", "worker", m.opts.ID, "sites", len(gone))
		m.lose(gone, false)
	}
	return nil
}

// balanceLoop runs balancing rounds until ctx ends.
func (m *Manager) balanceLoop(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		next := m.opts.Renew
		if !m.frozen.Load() {
			next = m.balance(ctx)
		}
		timer.Reset(next)
	}
}

// balance is one round: hand over what another live worker should own,
// take what this one should, load and serve it. It returns when the next
// round is due: Renew, or as soon as a live worker's heartbeat or a
// wanted site's lease runs out, so a dead worker's sites are taken the
// moment they are free.
func (m *Manager) balance(ctx context.Context) time.Duration {
	// A statement blocked longer than this (a lease row locked by a
	// commit in flight) is tried again next round.
	ctx, cancel := context.WithTimeout(ctx, m.opts.TTL-m.opts.Margin)
	defer cancel()
	workers, next, err := m.liveWorkers(ctx)
	if err != nil {
		m.log.Warn("read the live workers", "worker", m.opts.ID, "err", err)
		return m.opts.Renew
	}
	want := map[string]bool{}
	for s, w := range Assign(m.opts.Sites(), workers) {
		if w == m.opts.ID {
			want[s] = true
		}
	}
	held := m.Held()
	var give []taken
	var take []string
	for s, e := range held {
		if !want[s] {
			give = append(give, taken{s, e})
		}
	}
	for s := range want {
		if _, ok := held[s]; !ok {
			take = append(take, s)
		}
	}
	if len(give) > 0 {
		m.release(ctx, give)
	}
	if len(take) == 0 {
		return next
	}
	got, err := m.acquire(ctx, take)
	if err != nil {
		m.log.Warn("site lease acquisition failed", "worker", m.opts.ID, "err", err)
		return next
	}
	if len(got) > 0 {
		// A heartbeat after every acquisition too: when the others see
		// this worker gone, the leases it took last have expired as well,
		// and they take all its sites in one round.
		m.beat(ctx)
	}
	if len(got) < len(take) {
		if d, ok := m.nextFree(ctx, take); ok {
			next = min(next, d)
		}
	}
	m.takeOn(ctx, got)
	return next
}

// soonest bounds the wait for a lease or heartbeat to run out: a little
// past it, so the database's clock has passed it too.
const soonest = 20 * time.Millisecond

// liveWorkers returns the live workers, this one always among them, and
// the time until the first other one's heartbeat runs out (capped at
// Renew). Workers silent for an hour are deleted.
func (m *Manager) liveWorkers(ctx context.Context) ([]string, time.Duration, error) {
	if _, err := m.opts.Pool.Exec(ctx, `DELETE FROM hub_workers WHERE heartbeat < now() - interval '1 hour'`); err != nil {
		return nil, 0, fmt.Errorf("forget silent workers: %w", err)
	}
	rows, err := m.opts.Pool.Query(ctx, `SELECT id, (extract(epoch FROM heartbeat - now()) * 1000)::bigint + $1
		FROM hub_workers WHERE heartbeat > now() - $1 * interval '1 millisecond'`, ms(m.opts.TTL))
	if err != nil {
		return nil, 0, fmt.Errorf("live workers: %w", err)
	}
	type live struct {
		ID   string
		Left int64 // ms until its heartbeat is older than the TTL
	}
	ws, err := pgx.CollectRows(rows, pgx.RowToStructByPos[live])
	if err != nil {
		return nil, 0, fmt.Errorf("live workers: %w", err)
	}
	next := m.opts.Renew
	ids := []string{m.opts.ID}
	for _, w := range ws {
		if w.ID == m.opts.ID {
			continue
		}
		ids = append(ids, w.ID)
		next = min(next, time.Duration(w.Left)*time.Millisecond+soonest)
	}
	return ids, max(next, soonest), nil
}

// nextFree is the time until the first of sites' live leases runs out.
func (m *Manager) nextFree(ctx context.Context, sites []string) (time.Duration, bool) {
	var left *int64
	if err := m.opts.Pool.QueryRow(ctx, `SELECT (extract(epoch FROM min(expires_at) - now()) * 1000)::bigint
		FROM site_leases WHERE site = ANY($1) AND expires_at > now()`, sites).Scan(&left); err != nil || left == nil {
		return 0, false
	}
	return max(time.Duration(*left)*time.Millisecond+soonest, soonest), true
}

// takeOn loads and serves the sites just acquired, a batch at a time;
// sites that cannot be are handed back.
func (m *Manager) takeOn(ctx context.Context, got []taken) {
	for batch := range slices.Chunk(got, m.opts.Batch) {
		// Only what is still held: a lease lost since is dropped.
		var sites []string
		var load []taken
		m.mu.Lock()
		for _, t := range batch {
			if h, ok := m.held[t.Site]; ok && h.epoch == t.Epoch {
				sites = append(sites, t.Site)
				load = append(load, t)
			}
		}
		m.mu.Unlock()
		if len(sites) == 0 {
			continue
		}
		start := time.Now()
		if err := m.opts.Load(sites); err != nil {
			m.log.Error("sites acquired but not loaded; handed back", "worker", m.opts.ID, "sites", len(sites), "err", err)
			m.handBack(ctx, load)
			continue
		}
		loaded := time.Since(start)
		done := make(chan map[string]error, 1)
		m.enqueue(callback{serve: load, done: done})
		refused := <-done
		m.log.Info("sites taken on", "worker", m.opts.ID, "sites", len(sites),
			"load_ms", loaded.Milliseconds(), "total_ms", time.Since(start).Milliseconds())
		if len(refused) > 0 {
			var back []taken
			for _, t := range load {
				if _, no := refused[t.Site]; no {
					back = append(back, t)
				}
			}
			m.handBack(ctx, back)
		}
	}
}

// handBack forgets sites never served and ends their leases at once.
func (m *Manager) handBack(ctx context.Context, sites []taken) {
	var gone []taken
	m.mu.Lock()
	for _, t := range sites {
		if h, ok := m.held[t.Site]; ok && h.epoch == t.Epoch {
			delete(m.held, t.Site)
			gone = append(gone, t)
		}
	}
	m.mu.Unlock()
	m.expire(ctx, gone)
}

// release hands sites over: Lost first (nothing more of them is acked),
// then the leases expire at once for the next owner to take.
func (m *Manager) release(ctx context.Context, sites []taken) {
	m.lose(sites, true)
	m.expire(ctx, sites)
}

// expire ends leases of this worker at once.
func (m *Manager) expire(ctx context.Context, sites []taken) {
	if len(sites) == 0 {
		return
	}
	names := make([]string, len(sites))
	ep := make([]int64, len(sites))
	for i, t := range sites {
		names[i], ep[i] = t.Site, t.Epoch
	}
	if _, err := m.opts.Pool.Exec(ctx, `UPDATE site_leases l SET expires_at = now()
		FROM unnest($2::text[], $3::bigint[]) AS h(site, epoch)
		WHERE l.site = h.site AND l.epoch = h.epoch AND l.owner = $1`, m.opts.ID, names, ep); err != nil {
		// They expire by themselves after the TTL.
		m.log.Warn("release site leases", "worker", m.opts.ID, "sites", len(sites), "err", err)
	}
}

// acquire takes the sites whose lease is free or expired, each at the
// next epoch, and holds them (not served yet: takeOn does that).
func (m *Manager) acquire(ctx context.Context, sites []string) ([]taken, error) {
	slices.Sort(sites) // one order for every worker: no deadlocks between them
	start := time.Now()
	rows, err := m.opts.Pool.Query(ctx, `INSERT INTO site_leases AS l (site, owner, epoch, expires_at)
		SELECT s, $1, 1, now() + $2 * interval '1 millisecond' FROM unnest($3::text[]) AS s ORDER BY s
		ON CONFLICT (site) DO UPDATE SET owner = excluded.owner, epoch = l.epoch + 1, expires_at = excluded.expires_at
		WHERE l.expires_at <= now()
		RETURNING l.site, l.epoch`, m.opts.ID, ms(m.opts.TTL), sites)
	if err != nil {
		return nil, fmt.Errorf("acquire: %w", err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[taken])
	if err != nil {
		return nil, fmt.Errorf("acquire: %w", err)
	}
	until := start.Add(m.opts.TTL - m.opts.Margin)
	slices.SortFunc(got, func(a, b taken) int { return cmp.Compare(a.Site, b.Site) })
	m.mu.Lock()
	for _, g := range got {
		m.held[g.Site] = holding{epoch: g.Epoch, until: until}
	}
	m.mu.Unlock()
	return got, nil
}

// leave hands every site over and takes the worker off the live list, so
// the others rebalance at their next round.
func (m *Manager) leave() error {
	ctx, cancel := context.WithTimeout(context.Background(), m.opts.TTL)
	defer cancel()
	var all []taken
	for s, e := range m.Held() {
		all = append(all, taken{s, e})
	}
	if len(all) > 0 {
		m.release(ctx, all)
	}
	if _, err := m.opts.Pool.Exec(ctx, `DELETE FROM hub_workers WHERE id = $1`, m.opts.ID); err != nil {
		return fmt.Errorf("leave: %w", err)
	}
	return nil
}
