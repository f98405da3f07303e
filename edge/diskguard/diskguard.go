// Package diskguard keeps an edge's store out of ENOSPC: it watches the free
// space of the data dir, sheds unacked telemetry when space runs low, and
// refuses everything else before the disk is full.
//
// Badger does not survive running out of space cleanly (a write to an
// mmapped file on a full disk is a SIGBUS, a half-written table a corrupt
// store), so the guard decides before the store writes: below the telemetry
// reserve it drops the oldest unacked readings (recording a gap event that
// tells the hub what is missing) and deletes acked events early; below the
// hard reserve it refuses every write but its own gap events with
// ErrDiskReserve, which the API answers with 507. Reports, check-ins,
// votes, ratings, access events and alarms are never dropped.
package diskguard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"linli/edge/outbox"
	"linli/shared/event"
)

// ErrDiskReserve is what the guard returns when the disk is too full to take
// an event that may not be dropped; the edge's API answers it with 507.
var ErrDiskReserve = errors.New("disk reserve reached")

// Size is an amount of disk space: bytes, or a percentage of the disk.
type Size struct {
	Bytes   uint64
	Percent float64 // 0 < Percent < 100 when set; then Bytes is 0
}

// ParseSize reads "64MiB", "1GB", "500000", "512KiB" or "5%".
func ParseSize(s string) (Size, error) {
	t := strings.TrimSpace(s)
	if p, ok := strings.CutSuffix(t, "%"); ok {
		v, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || v <= 0 || v >= 100 {
			return Size{}, fmt.Errorf("%q: a percentage must be above 0%% and below 100%%", s)
		}
		return Size{Percent: v}, nil
	}
	units := []struct {
		suffix string
		mult   uint64
	}{
		{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
		{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1},
	}
	mult, num := uint64(1), t
	for _, u := range units {
		if n, ok := strings.CutSuffix(t, u.suffix); ok {
			mult, num = u.mult, strings.TrimSpace(n)
			break
		}
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v < 0 || v*float64(mult) > 1<<62 {
		return Size{}, fmt.Errorf("%q is not a size: use bytes with an optional unit (64MiB, 1GB) or a percentage (5%%)", s)
	}
	return Size{Bytes: uint64(v * float64(mult))}, nil
}

// Of resolves the size against a disk of total bytes.
func (s Size) Of(total uint64) uint64 {
	if s.Percent > 0 {
		return uint64(float64(total) * s.Percent / 100)
	}
	return s.Bytes
}

func (s Size) String() string {
	if s.Percent > 0 {
		return strconv.FormatFloat(s.Percent, 'f', -1, 64) + "%"
	}
	return human(s.Bytes)
}

func human(b uint64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.1fGiB", float64(b)/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1fMiB", float64(b)/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.1fKiB", float64(b)/(1<<10))
	}
	return fmt.Sprintf("%dB", b)
}

// Shedder is what the guard needs of the outbox to make room.
type Shedder interface {
	// ReclaimAcked deletes every acked event now, whatever the retention.
	ReclaimAcked(ctx context.Context) (int, error)
	// DropTelemetry drops up to limit of the oldest unacked telemetry
	// events and records a gap event; outbox.ErrNothingToDrop when there
	// is none.
	DropTelemetry(ctx context.Context, limit int, reason string) (event.Event, *event.Gap, error)
}

var _ Shedder = (*outbox.Log)(nil)

// Options configure a Guard.
type Options struct {
	Dir string
	// Reserve is the free space kept back from the store: below it every
	// write but a gap event is refused.
	Reserve Size
	// TelemetryReserve is the free space below which telemetry is shed.
	// It is raised to Reserve if lower.
	TelemetryReserve Size
	// Interval is the longest a free-space reading is trusted and the
	// pace of shedding rounds (default 1s).
	Interval time.Duration
	// DropBatch is how many readings one shedding round drops (default
	// 1,000).
	DropBatch int
	// Statfs reads free and total bytes of the disk holding dir (default
	// statfs(2)); tests replace it.
	Statfs func(dir string) (free, total uint64, err error)
	Logger *slog.Logger
	Now    func() time.Time
}

// Stats counts what the guard did.
type Stats struct {
	Free      uint64 // bytes free at the last reading
	Total     uint64
	Reserve   uint64 // resolved hard reserve in bytes
	Telemetry uint64 // resolved telemetry reserve in bytes
	Refused   uint64 // writes refused with ErrDiskReserve
	Dropped   uint64 // telemetry events dropped
	Gaps      uint64 // gap events recorded
	Reclaimed uint64 // acked events deleted early
	Statfs    uint64 // free-space readings taken
}

// Guard implements outbox.Guard. Create it with New; Run sheds telemetry.
type Guard struct {
	opts Options
	log  *slog.Logger
	wake chan struct{}

	mu       sync.Mutex
	free     uint64
	total    uint64
	at       time.Time
	admitted uint64 // bytes admitted since the last reading, amplified
	reserve  uint64
	telem    uint64
	stats    Stats
}

var _ outbox.Guard = (*Guard)(nil)

// ErrReserveTooLarge means the reserve does not fit the disk at all.
var ErrReserveTooLarge = errors.New("reserve is not smaller than the disk")

// amplification is how many bytes of disk an event of n body bytes may
// cost before compaction: the WAL, the level-0 table and a rewrite.
func amplification(n int) uint64 { return uint64(n+64) * 4 }

// New reads the disk once and checks the reserves against it.
func New(opts Options) (*Guard, error) {
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	if opts.DropBatch <= 0 {
		opts.DropBatch = 1000
	}
	if opts.Statfs == nil {
		opts.Statfs = Statfs
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	g := &Guard{opts: opts, log: opts.Logger, wake: make(chan struct{}, 1)}
	free, total, err := opts.Statfs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("disk guard: %w", err)
	}
	g.reserve = opts.Reserve.Of(total)
	g.telem = max(opts.TelemetryReserve.Of(total), g.reserve)
	if g.reserve >= total {
		return nil, fmt.Errorf("%w: reserve %s, disk of %s is %s", ErrReserveTooLarge, opts.Reserve, opts.Dir, human(total))
	}
	g.setFree(free, total)
	return g, nil
}

// Statfs reads the free space (available to unprivileged users, as the
// store's writes see it) and the size of the disk holding dir.
func Statfs(dir string) (free, total uint64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return st.Bavail * uint64(st.Bsize), st.Blocks * uint64(st.Bsize), nil
}

// setFree records a reading; callers hold g.mu or own g.
func (g *Guard) setFree(free, total uint64) {
	g.free, g.total, g.at, g.admitted = free, total, g.opts.Now(), 0
	g.stats.Statfs++
}

// refresh takes a new reading. Callers hold g.mu.
func (g *Guard) refresh() {
	free, total, err := g.opts.Statfs(g.opts.Dir)
	if err != nil {
		// Keep the old reading, aged by what was admitted since: a guard
		// that cannot see the disk must not open the gates.
		g.log.Warn("disk guard cannot read free space", "err", err)
		return
	}
	g.setFree(free, total)
}

// estimate is the free space now: the last reading less what was admitted
// since, refreshed when stale or when near a threshold. Callers hold g.mu.
func (g *Guard) estimate() uint64 {
	est := g.free - min(g.free, g.admitted)
	margin := uint64(4 << 20)
	if g.opts.Now().Sub(g.at) >= g.opts.Interval || est < g.telem+margin {
		g.refresh()
		est = g.free
	}
	return est
}

// Admit lets a write of kind with a body of size bytes through, or refuses
// it with ErrDiskReserve when free space is below the reserve. Gap
// events always pass: they are tiny and say what was dropped.
func (g *Guard) Admit(kind event.Kind, size int) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if kind == event.KindGap {
		return nil
	}
	free := g.estimate()
	if free < g.reserve {
		g.stats.Refused++
		g.signal()
		return fmt.Errorf("%w: %s free on the data disk, %s is kept in reserve so the store never runs out of space",
			ErrDiskReserve, human(free), human(g.reserve))
	}
	if free < g.telem {
		g.signal()
	}
	g.admitted += amplification(size)
	return nil
}

// Refusing returns why writes are refused now (free space below the
// reserve at the last reading, less what was admitted since), or nil.
func (g *Guard) Refusing() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if free := g.free - min(g.free, g.admitted); free < g.reserve {
		return fmt.Errorf("%s free on the data disk, below the %s reserve: writes are refused", human(free), human(g.reserve))
	}
	return nil
}

func (g *Guard) signal() {
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

// Stats returns the counters and the last reading.
func (g *Guard) Stats() Stats {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.stats
	s.Free, s.Total, s.Reserve, s.Telemetry = g.free, g.total, g.reserve, g.telem
	return s
}

// Run sheds space while free space is below the telemetry reserve, one
// round per Interval at most, until ctx ends: first acked events kept for
// retention, then the oldest unacked telemetry, a DropBatch at a time.
func (g *Guard) Run(ctx context.Context, s Shedder) error {
	t := time.NewTicker(g.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-g.wake:
		}
		g.mu.Lock()
		g.refresh()
		free, telem := g.free, g.telem
		g.mu.Unlock()
		if free >= telem {
			continue
		}
		g.shed(ctx, s, free)
		// One round per interval: deletions free space only as the store
		// compacts, so give it time before dropping more.
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(g.opts.Interval):
		}
	}
}

func (g *Guard) shed(ctx context.Context, s Shedder, free uint64) {
	n, err := s.ReclaimAcked(ctx)
	if err != nil {
		g.log.Error("disk low: deleting acked events failed", "err", err)
	} else if n > 0 {
		g.log.Warn("disk low: deleted acked events before their retention ended", "events", n, "free", human(free))
	}
	reason := fmt.Sprintf("disk low: %s free, telemetry reserve %s", human(free), human(g.telem))
	_, gap, err := s.DropTelemetry(ctx, g.opts.DropBatch, reason)
	g.mu.Lock()
	g.stats.Reclaimed += uint64(max(n, 0))
	if err == nil {
		g.stats.Dropped += gap.Dropped
		g.stats.Gaps++
	}
	g.mu.Unlock()
	switch {
	case err == nil, errors.Is(err, outbox.ErrNothingToDrop):
	case ctx.Err() != nil:
	default:
		g.log.Error("disk low: dropping telemetry failed", "err", err)
	}
}
