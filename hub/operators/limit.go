package operators

import (
	"sync"
	"time"
)

// Limits bound failed logins: at most PerName failures for one account name
// and PerClient for one client address within Window. A success clears
// the name's count. Failures, not attempts, are counted, so an operator who
// types their password right is never held up by someone else's guessing
// from another address.
type Limits struct {
	PerName   int
	PerClient int
	Window    time.Duration
}

// DefaultLimits allow 5 wrong passwords per name and 20 per address in 15
// minutes.
var DefaultLimits = Limits{PerName: 5, PerClient: 20, Window: 15 * time.Minute}

// maxTracked bounds the limiter's memory under a spray of names.
const maxTracked = 10000

// LoginLimiter counts failed logins under Limits. A store provides it
// (Store.LoginLimiter): the Badger store counts in the hub's memory, the
// PostgreSQL store in a table every hub on the database shares.
type LoginLimiter interface {
	// Wait reports how long a login for name from client must wait; 0
	// means it may go ahead.
	Wait(name, client string) (time.Duration, error)
	// Fail records a failed login for name from client.
	Fail(name, client string) error
	// Succeed clears name's count.
	Succeed(name string) error
}

// limiter is the LoginLimiter in memory.
type limiter struct {
	lim Limits
	now func() time.Time

	mu       sync.Mutex
	failures map[string][]time.Time // "n:"+name or "c:"+client → failure times, oldest first
}

func newLimiter(l Limits, now func() time.Time) *limiter {
	return &limiter{lim: l, now: now, failures: map[string][]time.Time{}}
}

var _ LoginLimiter = (*limiter)(nil)

// Wait implements LoginLimiter.
func (l *limiter) Wait(name, client string) (time.Duration, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	w := waitFor(l.prune("n:"+name, now), l.lim.PerName, l.lim.Window, now)
	return max(w, waitFor(l.prune("c:"+client, now), l.lim.PerClient, l.lim.Window, now)), nil
}

// waitFor is how long a key with failures ts (within the window, oldest
// first) must wait under limit.
func waitFor(ts []time.Time, limit int, window time.Duration, now time.Time) time.Duration {
	if len(ts) < limit {
		return 0
	}
	// Free again when the oldest failure that keeps it at the limit ages out.
	return ts[len(ts)-limit].Add(window).Sub(now)
}

func (l *limiter) prune(key string, now time.Time) []time.Time {
	ts := l.failures[key]
	i := 0
	for i < len(ts) && !ts[i].Add(l.lim.Window).After(now) {
		i++
	}
	ts = ts[i:]
	if len(ts) == 0 {
		delete(l.failures, key)
		return nil
	}
	l.failures[key] = ts
	return ts
}

// Fail implements LoginLimiter.
func (l *limiter) Fail(name, client string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if len(l.failures) >= maxTracked {
		for k := range l.failures {
			l.prune(k, now)
		}
	}
	if len(l.failures) >= maxTracked {
		// Still full of live entries: forget one rather than grow without
		// bound; the per-client count of the sprayer stays.
		for k := range l.failures {
			if k[0] == 'n' {
				delete(l.failures, k)
				break
			}
		}
	}
	for _, k := range []string{"n:" + name, "c:" + client} {
		l.failures[k] = append(l.failures[k], now)
	}
	return nil
}

// Succeed implements LoginLimiter.
func (l *limiter) Succeed(name string) error {
	l.mu.Lock()
	delete(l.failures, "n:"+name)
	l.mu.Unlock()
	return nil
}
