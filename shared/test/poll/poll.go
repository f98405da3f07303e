// Package poll waits for a condition with a deadline instead of sleeping:
// the one polling helper of the tests and the benchmark harness. It
// imports nothing of the project, so any package's unit tests may use it.
package poll

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// Interval is how often Eventually and WaitFor check their condition.
const Interval = 20 * time.Millisecond

// Eventually polls cond every Interval until it returns true or timeout
// passes, then fails the test with the last reason cond gave.
func Eventually(t testing.TB, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var why string
	for {
		var ok bool
		ok, why = cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", timeout, why)
		}
		time.Sleep(Interval)
	}
}

// WaitFor is Eventually for a condition with nothing to report: it waits
// up to 10 s and fails the test naming what it waited for.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	WaitForWithin(t, 10*time.Second, what, cond)
}

// WaitForWithin is WaitFor with its own timeout.
func WaitForWithin(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	Eventually(t, timeout, func() (bool, string) { return cond(), what })
}

// ErrNotMet is what Until wraps when the deadline passes and cond never
// gave an error of its own.
var ErrNotMet = errors.New("condition not met")

// Until calls cond every interval until it returns true, check fails
// (a process under watch has died, say), ctx ends or timeout passes. The
// error then wraps the last error cond returned, or ErrNotMet. It is the
// form for code without a testing.TB, such as the benchmark harness.
func Until(ctx context.Context, timeout, interval time.Duration, cond func() (bool, error), check func() error) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		if err != nil {
			last = err
		}
		if check != nil {
			if err := check(); err != nil {
				return err
			}
		}
		if time.Now().After(deadline) {
			if last == nil {
				last = ErrNotMet
			}
			return fmt.Errorf("not within %v: %w", timeout, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}

// Settled polls f every Interval until it returns the same value for
// still, and returns that value; it fails the test when f has not held
// still within timeout. It is how a test waits for what is already on its
// way (acks of commits before a stalled one) to arrive.
func Settled[T comparable](t testing.TB, timeout, still time.Duration, f func() T) T {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last, since := f(), time.Now()
	for {
		time.Sleep(Interval)
		if v := f(); v != last {
			last, since = v, time.Now()
		} else if time.Since(since) >= still {
			return last
		}
		if time.Now().After(deadline) {
			t.Fatalf("not still for %v within %v (last %v)", still, timeout, last)
		}
	}
}
