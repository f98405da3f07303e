// Package retention deletes the hub's raw events of high-volume kinds
// (readings, door decisions) once they are older than their kind's
// retention, so the store does not grow with every sample a gateway ever
// sent. Facts and the hub's decisions are never deleted, nor the events
// the merged state rebuilds from.
package retention

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"linli/hub/store"
	"linli/shared/event"
)

// Store is where the events are: the hub's Badger store (*store.Store) or
// PostgreSQL (pgstore.Store).
type Store interface {
	Expire(e store.Expiry, stop func() bool) (map[event.Kind]int, error)
	LastExpiryPass() (time.Time, error)
	RecordExpiryPass(t time.Time) error
}

// Options configure a Loop.
type Options struct {
	Store Store
	// Keep is how long raw events of each kind are kept; a kind not in it,
	// or kept for 0, is kept for ever.
	Keep map[event.Kind]time.Duration
	// Needed says the merged state needs an event (state.NeedsEvent): it
	// is kept whatever its age.
	Needed func(site string, ev *event.Event) bool
	// Every is how often a pass runs (default an hour), counted from the
	// last complete pass the store recorded; without one the first runs
	// at once.
	Every  time.Duration
	Batch  int                                  // deletions per transaction (default 1000)
	Now    func() time.Time                     // default time.Now
	After  func(time.Duration) <-chan time.Time // default time.After
	Logger *slog.Logger
}

// Loop runs the passes and counts what they deleted.
type Loop struct {
	opts    Options
	expired *prometheus.CounterVec
}

// New returns a loop; Register its metric, then Run it.
func New(opts Options) *Loop {
	if opts.Every <= 0 {
		opts.Every = time.Hour
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.After == nil {
		opts.After = time.After
	}
	l := &Loop{opts: opts, expired: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "linli_hub_events_expired_total",
		Help: "Raw events deleted after their kind's retention (--keep-readings, --keep-access).",
	}, []string{"kind"})}
	for k, d := range opts.Keep {
		if d > 0 {
			l.expired.WithLabelValues(k.String()) // shown at 0 before the first deletion
		}
	}
	return l
}

// Collector is the loop's metric.
func (l *Loop) Collector() prometheus.Collector { return l.expired }

// Enabled says whether any kind has a retention.
func (l *Loop) Enabled() bool {
	for _, d := range l.opts.Keep {
		if d > 0 {
			return true
		}
	}
	return false
}

// Run runs a pass whenever one is due until ctx ends: Every after the
// last complete pass, which the store records, so a restarted hub does not
// read every stored event again at once (years of history take a pass
// tens of seconds of CPU, and fill the block cache and the page cache);
// at once when no pass was recorded or one is overdue. A pass in progress
// stops between batches when ctx ends.
func (l *Loop) Run(ctx context.Context) {
	if !l.Enabled() {
		return
	}
	next := l.opts.Now()
	if last, err := l.opts.Store.LastExpiryPass(); err != nil {
		l.opts.Logger.Error("last retention pass unknown; passing now", "err", err)
	} else if !last.IsZero() {
		// A clock set back since must not put the pass off longer than
		// Every.
		if now := l.opts.Now(); last.After(now) {
			last = now
		}
		next = last.Add(l.opts.Every)
		l.opts.Logger.Info("next retention pass", "last", last.UTC().Format(time.RFC3339), "next", next.UTC().Format(time.RFC3339))
	}
	for {
		if wait := next.Sub(l.opts.Now()); wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-l.opts.After(wait):
			}
		}
		next = l.opts.Now().Add(l.opts.Every)
		if _, err := l.Pass(ctx); err != nil && ctx.Err() == nil {
			l.opts.Logger.Error("event retention pass failed; the next pass tries again", "err", err)
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// Pass deletes what has expired now and returns how many of each kind.
func (l *Loop) Pass(ctx context.Context) (map[event.Kind]int, error) {
	now := l.opts.Now()
	before := map[event.Kind]time.Time{}
	for k, d := range l.opts.Keep {
		if d > 0 {
			before[k] = now.Add(-d)
		}
	}
	if len(before) == 0 {
		return nil, nil
	}
	start := time.Now()
	n, err := l.opts.Store.Expire(store.Expiry{Before: before, Keep: l.opts.Needed, Batch: l.opts.Batch},
		func() bool { return ctx.Err() != nil })
	if err == nil && ctx.Err() == nil {
		err = l.opts.Store.RecordExpiryPass(now)
	}
	total := 0
	for _, k := range slices.Sorted(maps.Keys(n)) {
		l.expired.WithLabelValues(k.String()).Add(float64(n[k]))
		total += n[k]
	}
	if total > 0 {
		l.opts.Logger.Info("expired raw events deleted", "events", total, "took", time.Since(start).Round(time.Millisecond))
	}
	return n, err
}
