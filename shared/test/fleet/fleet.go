// Package fleet simulates a fleet of enrolled edges in one process, for
// the scale test and the benchmark: each edge has an identity of its own
// (an Ed25519 key enrolled through the hub's API, its broker login), its
// own paho session, signs its batches as an edge's uplink does and checks
// the hub's signed acks. A paced writer spreads a total event rate over the
// fleet; every event's write→ack latency is recorded once, when the hub's
// ack first covers it. Edges reconnect on their own with the uplink's
// jittered backoff, so a broker restart is a reconnect of the whole fleet.
package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"linli/edge/enroll"
	"linli/shared/test/poll"
)

// Config is the shape of a fleet and how it reaches the hub.
type Config struct {
	Hub    string // the hub's HTTP URL, for enrollment
	Token  string // an admin token of the hub
	Broker string // tcp://… the edges connect to
	Dir    string // one data dir per edge holds its identity

	Edges int // simulated edges (default 20)
	Sites int // sites they are spread over, round robin (default 4)
	// Prefix names the edges <Prefix>-<n> and the sites <Prefix>-s<n>
	// (default "fleet").
	Prefix string

	Batch     int           // most events in one batch (default 100)
	Window    int           // batches in flight per edge (default 4)
	Parallel  int           // enrollments and first connections at once (default 32)
	KeepAlive time.Duration // MQTT keepalive (default 30s)
	// AckTimeout: without the hub's ack for this long, an edge sends its
	// unacked events again (default 10s, the uplink's).
	AckTimeout time.Duration
	// BackoffMin and BackoffMax bound the reconnect delay (default the
	// uplink's 250ms and 10s).
	BackoffMin, BackoffMax time.Duration

	Log *slog.Logger
}

func (c *Config) defaults() {
	if c.Edges <= 0 {
		c.Edges = 20
	}
	if c.Sites <= 0 {
		c.Sites = 4
	}
	c.Sites = min(c.Sites, c.Edges)
	if c.Prefix == "" {
		c.Prefix = "fleet"
	}
	if c.Batch <= 0 {
		c.Batch = 100
	}
	if c.Window <= 0 {
		c.Window = 4
	}
	if c.Parallel <= 0 {
		c.Parallel = 32
	}
	if c.KeepAlive <= 0 {
		c.KeepAlive = 30 * time.Second
	}
	if c.AckTimeout <= 0 {
		c.AckTimeout = 10 * time.Second
	}
	if c.BackoffMin <= 0 {
		c.BackoffMin = 250 * time.Millisecond
	}
	if c.BackoffMax <= 0 {
		c.BackoffMax = 10 * time.Second
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
}

// Fleet is a set of enrolled simulated edges.
type Fleet struct {
	cfg   Config
	Edges []*Edge
	lat   Latencies

	cancel context.CancelFunc
	wg     sync.WaitGroup
	rr     atomic.Uint64 // the paced writer's next edge
}

// httpc enrolls the fleet: one connection per parallel enrollment.
var httpc = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
	MaxIdleConns: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: 30 * time.Second}}

// Enroll registers every edge with the hub and enrolls it as an installer
// would (POST /api/v1/devices for a one-time token, then the edge's own
// enrollment with a fresh key), c.Parallel at once. It returns the fleet,
// not yet connected.
func Enroll(ctx context.Context, c Config) (*Fleet, error) {
	c.defaults()
	if c.Hub == "" || c.Broker == "" || c.Dir == "" {
		return nil, errors.New("fleet: Hub, Broker and Dir are required")
	}
	f := &Fleet{cfg: c, Edges: make([]*Edge, c.Edges)}
	for i := range f.Edges {
		f.Edges[i] = &Edge{ID: fmt.Sprintf("%s-%d", c.Prefix, i), Site: fmt.Sprintf("%s-s%d", c.Prefix, i%c.Sites),
			n: i, f: f, sig: make(chan struct{}, 1)}
	}
	err := f.each(ctx, c.Parallel, func(e *Edge) error { return e.enroll(ctx) })
	if err != nil {
		return nil, err
	}
	return f, nil
}

// each runs fn for every edge, at most par at once, and joins the first
// errors.
func (f *Fleet) each(ctx context.Context, par int, fn func(e *Edge) error) error {
	sem := make(chan struct{}, par)
	var wg sync.WaitGroup
	errs := make([]error, len(f.Edges))
	for i, e := range f.Edges {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			errs[i] = ctx.Err()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			errs[i] = fn(e)
		}()
	}
	wg.Wait()
	return FirstErrs(errs)
}

func (e *Edge) enroll(ctx context.Context) error {
	c := e.f.cfg
	var tok struct {
		Token string `json:"token"`
	}
	if err := postJSON(ctx, c.Hub+"/api/v1/devices", c.Token,
		map[string]string{"id": e.ID, "site": e.Site, "role": "gateway"}, http.StatusCreated, &tok); err != nil {
		return fmt.Errorf("token for %s: %w", e.ID, err)
	}
	dir := filepath.Join(c.Dir, e.ID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	id, err := enroll.Enroll(ctx, enroll.Options{Hub: c.Hub, Token: tok.Token, DataDir: dir, RetryMax: 3})
	if err != nil {
		return fmt.Errorf("enroll %s: %w", e.ID, err)
	}
	if id.ID != e.ID || id.Site != e.Site {
		return fmt.Errorf("enroll %s: the hub answered for %s in %s", e.ID, id.ID, id.Site)
	}
	e.ident = id
	return nil
}

// Start connects every edge, c.Parallel at a time, and waits until each
// has had the hub's answer to its hello (or timeout passes). The edges
// keep their sessions, reconnecting when they lose them, until Close.
func (f *Fleet) Start(ctx context.Context, timeout time.Duration) error {
	if f.cancel != nil {
		return errors.New("fleet: started already")
	}
	runCtx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	deadline := time.Now().Add(timeout)
	return f.each(ctx, f.cfg.Parallel, func(e *Edge) error {
		f.wg.Add(1)
		go func() { defer f.wg.Done(); e.run(runCtx) }()
		return poll.Until(ctx, time.Until(deadline), 5*time.Millisecond, func() (bool, error) {
			return e.Sessions() > 0, nil
		}, nil)
	})
}

// Close ends every session and waits for the edges to stop.
func (f *Fleet) Close() {
	if f.cancel == nil {
		return
	}
	f.cancel()
	f.wg.Wait()
}

// Pace writes rate events a second in all, each to the next edge in turn,
// for d (or until ctx ends), and returns how many it wrote. It catches up
// on its schedule every few milliseconds, so the rate holds while single
// writes wait.
func (f *Fleet) Pace(ctx context.Context, rate float64, d time.Duration) int64 {
	if rate <= 0 || d <= 0 {
		return 0
	}
	start := time.Now()
	end := start.Add(d)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	var written int64
	for {
		now := time.Now()
		if now.After(end) {
			now = end
		}
		due := int64(rate * now.Sub(start).Seconds())
		for ; written < due; written++ {
			e := f.Edges[f.rr.Add(1)%uint64(len(f.Edges))]
			e.write(now)
		}
		if !now.Before(end) {
			return written
		}
		select {
		case <-ctx.Done():
			return written
		case <-tick.C:
		}
	}
}

// WriteEach writes n events on every edge (offline, they wait to be sent).
func (f *Fleet) WriteEach(n int) {
	now := time.Now()
	for _, e := range f.Edges {
		for range n {
			e.write(now)
		}
	}
}

// CaughtUp reports how many edges have every event they wrote acked.
func (f *Fleet) CaughtUp() int {
	n := 0
	for _, e := range f.Edges {
		if w, a := e.Cursors(); a == w {
			n++
		}
	}
	return n
}

// Connected counts the edges whose session has had the hub's hello answer.
func (f *Fleet) Connected() int {
	n := 0
	for _, e := range f.Edges {
		if e.connected.Load() {
			n++
		}
	}
	return n
}

// WaitCaughtUp waits until every edge has every event it wrote acked.
func (f *Fleet) WaitCaughtUp(ctx context.Context, timeout time.Duration) error {
	err := poll.Until(ctx, timeout, 20*time.Millisecond, func() (bool, error) {
		return f.CaughtUp() == len(f.Edges), nil
	}, nil)
	if err != nil {
		return fmt.Errorf("%d of %d edges caught up (%d connected): %w", f.CaughtUp(), len(f.Edges), f.Connected(), err)
	}
	return nil
}

// Latencies takes the write→ack latencies recorded since the last call.
func (f *Fleet) Latencies() []time.Duration { return f.lat.take() }

// Stats sums the edges' counters.
func (f *Fleet) Stats() Stats {
	var s Stats
	for _, e := range f.Edges {
		e.mu.Lock()
		s.Written += uint64(len(e.written))
		s.Acked += e.acked
		s.Resent += e.resent
		e.mu.Unlock()
		s.Sessions += e.sessions.Load()
		s.ConnectErrs += e.connectErrs.Load()
		s.AcksRefused += e.acksRefused.Load()
		s.Batches += e.batches.Load()
	}
	return s
}

// Stats are a fleet's counters.
type Stats struct {
	Written, Acked uint64 // events written and acked by the hub
	Resent         uint64 // events sent again (after a reconnect or an ack timeout)
	Batches        uint64 // batches published
	Sessions       uint64 // sessions the hub answered the hello of
	ConnectErrs    uint64 // connection attempts that failed
	AcksRefused    uint64 // acks not signed by the hub, or impossible
}

// Latencies collects write→ack samples.
type Latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *Latencies) add(d ...time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d...)
	l.mu.Unlock()
}

func (l *Latencies) take() []time.Duration {
	l.mu.Lock()
	out := l.d
	l.d = nil
	l.mu.Unlock()
	slices.Sort(out)
	return out
}

// Percentile is the p-quantile (0…1) of sorted samples; 0 for none.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p * float64(len(sorted)-1))
	return sorted[i]
}

// FirstErrs joins the first three errors and counts the rest: a fleet's
// thousand identical failures read as one line.
func FirstErrs(errs []error) error {
	var out []error
	n := 0
	for _, err := range errs {
		if err == nil {
			continue
		}
		if n++; n <= 3 {
			out = append(out, err)
		}
	}
	if n > 3 {
		out = append(out, fmt.Errorf("and %d more", n-3))
	}
	return errors.Join(out...)
}
