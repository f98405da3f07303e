// Package lease gives each site one owning hub worker at a time, through a
// lease row in PostgreSQL whose fencing epoch every commit of the site's
// writes checks.
package lease

import (
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

// Defaults: a SIGKILLed worker's sites are free TTL after its last renewal
// and taken at the next tick of another worker, so within TTL+Renew = 8 s.
const (
	DefaultTTL    = 6 * time.Second
	DefaultRenew  = 2 * time.Second
	DefaultMargin = time.Second
)

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
	// Acquired is called when the worker takes a site at epoch: an error
	// (the worker cannot serve the site now) hands the lease back, to be
	// tried again at a later tick. Lost is called when the worker gives a
	// site up or finds it gone, and returns only once nothing more of the
	// site may be acked. Both run on Run's goroutine, in order.
	Acquired func(site string, epoch int64) error
	Lost     func(site string)
	Logger   *slog.Logger
}

// Manager holds one worker's leases: it heartbeats, takes its fair share
// of the sites over the live workers (Assign), renews what it holds and
// hands over what another worker should own.
type Manager struct {
	opts Options
	log  *slog.Logger

	mu   sync.Mutex
	held map[string]holding

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
	if opts.Acquired == nil {
		opts.Acquired = func(string, int64) error { return nil }
	}
	if opts.Lost == nil {
		opts.Lost = func(string) {}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Manager{opts: opts, log: opts.Logger, held: map[string]holding{}}, nil
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
// worker takes it at its next tick rather than after the TTL) and removes
// the worker from the live ones. It returns nil after a clean handover.
func (m *Manager) Run(ctx context.Context) error {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return m.leave()
		case <-timer.C:
		}
		if !m.frozen.Load() {
			m.loseExpired()
			m.tick(ctx)
			m.loseExpired()
		}
		timer.Reset(m.wait())
	}
}

// wait is the time to the next tick: Renew, or sooner if a lease's bound
// comes first, so a worker cut off from the database gives it up in time
// even when each try fails at once.
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
	var gone []string
	m.mu.Lock()
	for s, h := range m.held {
		if !now.Before(h.until) {
			gone = append(gone, s)
		}
	}
	m.mu.Unlock()
	if len(gone) > 0 {
		m.log.Warn("site leases not renewed in time; given up", "worker", m.opts.ID, "sites", len(gone))
		m.lose(gone)
	}
}

// lose forgets sites and calls Lost for each, in order.
func (m *Manager) lose(sites []string) {
	slices.Sort(sites)
	m.mu.Lock()
	for _, s := range sites {
		delete(m.held, s)
	}
	m.mu.Unlock()
	for _, s := range sites {
		m.log.Info("site lease lost", "worker", m.opts.ID, "site", s)
		m.opts.Lost(s)
	}
}

// tick is one round: heartbeat, renew, hand over, take.
func (m *Manager) tick(ctx context.Context) {
	// No statement may outlast the earliest bound: a worker blocked on an
	// unreachable database must still give its leases up in time.
	ctx, cancel := context.WithDeadline(ctx, time.Now().Add(m.wait()))
	defer cancel()
	workers, err := m.heartbeat(ctx)
	if err != nil {
		m.log.Warn("lease heartbeat failed", "worker", m.opts.ID, "err", err)
		return
	}
	if err := m.renew(ctx); err != nil {
		m.log.Warn("lease renewal failed", "worker", m.opts.ID, "err", err)
		return
	}
	want := map[string]bool{}
	for s, w := range Assign(m.opts.Sites(), workers) {
		if w == m.opts.ID {
			want[s] = true
		}
	}
	held := m.Held()
	var give, take []string
	for s := range held {
		if !want[s] {
			give = append(give, s)
		}
	}
	for s := range want {
		if _, ok := held[s]; !ok {
			take = append(take, s)
		}
	}
	if len(give) > 0 {
		m.release(ctx, give, held)
	}
	if len(take) > 0 {
		if err := m.acquire(ctx, take); err != nil {
			m.log.Warn("site lease acquisition failed", "worker", m.opts.ID, "err", err)
		}
	}
}

func ms(d time.Duration) int64 { return d.Milliseconds() }

// heartbeat marks the worker live and returns the live workers, itself
// always among them. Workers silent for an hour are deleted.
func (m *Manager) heartbeat(ctx context.Context) ([]string, error) {
	if _, err := m.opts.Pool.Exec(ctx, `INSERT INTO hub_workers (id, heartbeat) VALUES ($1, now())
		ON CONFLICT (id) DO UPDATE SET heartbeat = now()`, m.opts.ID); err != nil {
		return nil, fmt.Errorf("heartbeat: %w", err)
	}
	if _, err := m.opts.Pool.Exec(ctx, `DELETE FROM hub_workers WHERE heartbeat < now() - interval '1 hour'`); err != nil {
		return nil, fmt.Errorf("forget silent workers: %w", err)
	}
	rows, err := m.opts.Pool.Query(ctx, `SELECT id FROM hub_workers WHERE heartbeat > now() - $1 * interval '1 millisecond'`, ms(m.opts.TTL))
	if err != nil {
		return nil, fmt.Errorf("live workers: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("live workers: %w", err)
	}
	if !slices.Contains(ids, m.opts.ID) {
		ids = append(ids, m.opts.ID)
	}
	return ids, nil
}

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
	var gone []string
	m.mu.Lock()
	for _, s := range renewed {
		if h, ok := m.held[s]; ok {
			h.until = until
			m.held[s] = h
		}
	}
	for _, s := range sites {
		if !slices.Contains(renewed, s) {
			gone = append(gone, s)
		}
	}
	m.mu.Unlock()
	if len(gone) > 0 {
		m.log.Warn("site leases found taken or expired", "worker", m.opts.ID, "sites", len(gone))
		m.lose(gone)
	}
	return nil
}

// release hands sites over: Lost first (nothing more of them is acked),
// then the leases expire at once for the next owner to take.
func (m *Manager) release(ctx context.Context, sites []string, epochs map[string]int64) {
	m.lose(sites)
	m.expire(ctx, sites, epochs)
}

// expire ends leases of this worker at once.
func (m *Manager) expire(ctx context.Context, sites []string, epochs map[string]int64) {
	ep := make([]int64, len(sites))
	for i, s := range sites {
		ep[i] = epochs[s]
	}
	if _, err := m.opts.Pool.Exec(ctx, `UPDATE site_leases l SET expires_at = now()
		FROM unnest($2::text[], $3::bigint[]) AS h(site, epoch)
		WHERE l.site = h.site AND l.epoch = h.epoch AND l.owner = $1`, m.opts.ID, sites, ep); err != nil {
		// They expire by themselves after the TTL.
		m.log.Warn("release site leases", "worker", m.opts.ID, "sites", len(sites), "err", err)
	}
}

// acquire takes the sites whose lease is free or expired, each at the
// next epoch.
func (m *Manager) acquire(ctx context.Context, sites []string) error {
	slices.Sort(sites) // one order for every worker: no deadlocks between them
	start := time.Now()
	rows, err := m.opts.Pool.Query(ctx, `INSERT INTO site_leases AS l (site, owner, epoch, expires_at)
		SELECT s, $1, 1, now() + $2 * interval '1 millisecond' FROM unnest($3::text[]) AS s ORDER BY s
		ON CONFLICT (site) DO UPDATE SET owner = excluded.owner, epoch = l.epoch + 1, expires_at = excluded.expires_at
		WHERE l.expires_at <= now()
		RETURNING l.site, l.epoch`, m.opts.ID, ms(m.opts.TTL), sites)
	if err != nil {
		return fmt.Errorf("acquire: %w", err)
	}
	type got struct {
		Site  string
		Epoch int64
	}
	taken, err := pgx.CollectRows(rows, pgx.RowToStructByPos[got])
	if err != nil {
		return fmt.Errorf("acquire: %w", err)
	}
	until := start.Add(m.opts.TTL - m.opts.Margin)
	slices.SortFunc(taken, func(a, b got) int {
		if a.Site < b.Site {
			return -1
		}
		return 1
	})
	m.mu.Lock()
	for _, g := range taken {
		m.held[g.Site] = holding{epoch: g.Epoch, until: until}
	}
	m.mu.Unlock()
	var refused []string
	refusedEpochs := map[string]int64{}
	for _, g := range taken {
		if err := m.opts.Acquired(g.Site, g.Epoch); err != nil {
			m.log.Error("site lease acquired but the site cannot be served; handed back", "worker", m.opts.ID, "site", g.Site, "err", err)
			refused = append(refused, g.Site)
			refusedEpochs[g.Site] = g.Epoch
			continue
		}
		m.log.Info("site lease acquired", "worker", m.opts.ID, "site", g.Site, "epoch", g.Epoch)
	}
	if len(refused) > 0 {
		m.mu.Lock()
		for _, s := range refused {
			delete(m.held, s)
		}
		m.mu.Unlock()
		m.expire(ctx, refused, refusedEpochs)
	}
	return nil
}

// leave hands every site over and takes the worker off the live list, so
// the others rebalance at their next tick.
func (m *Manager) leave() error {
	ctx, cancel := context.WithTimeout(context.Background(), m.opts.TTL)
	defer cancel()
	held := m.Held()
	if len(held) > 0 {
		m.release(ctx, slices.Collect(maps.Keys(held)), held)
	}
	if _, err := m.opts.Pool.Exec(ctx, `DELETE FROM hub_workers WHERE id = $1`, m.opts.ID); err != nil {
		return fmt.Errorf("leave: %w", err)
	}
	return nil
}
