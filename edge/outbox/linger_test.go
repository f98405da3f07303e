package outbox

import (
	"context"
	"sync"
	"testing"
	"time"
)

func openLinger(t *testing.T, linger time.Duration) *Log {
	t.Helper()
	l, err := Open(openStore(t, t.TempDir()).DB(), Options{Device: "gw-1", Retention: time.Hour, RetentionInterval: time.Hour, Linger: linger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
	})
	return l
}

// A lone writer never lingers: with an hour of linger its appends still
// return at once.
func TestLingerLoneWriterNeverWaits(t *testing.T) {
	l := openLinger(t, time.Hour)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 20 {
			if _, err := l.Append(context.Background(), checkin(i)); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("a lone writer waited for writers that do not exist")
	}
}

// Writers answered by one commit come back together and share the next:
// groups are about as large as the number of writers, not half of it.
func TestLingerKeepsConcurrentWritersTogether(t *testing.T) {
	l := openLinger(t, 50*time.Millisecond)
	const writers, each = 32, 20
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if _, err := l.Append(context.Background(), checkin(w*each+i)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	st := l.Stats()
	if per := float64(st.LastSeq) / float64(st.Commits); per < writers*2/3 {
		t.Fatalf("%d appends in %d commits (%.1f per commit), want about %d per commit", st.LastSeq, st.Commits, per, writers)
	}
}

// When writers stop coming, a commit waits at most the linger once.
func TestLingerIsBounded(t *testing.T) {
	l := openLinger(t, 20*time.Millisecond)
	var wg sync.WaitGroup
	for i := range 8 { // eight writers once, so the next commit expects eight
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := l.Append(context.Background(), checkin(i)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	start := time.Now()
	for i := range 10 { // then one writer alone
		if _, err := l.Append(context.Background(), checkin(100+i)); err != nil {
			t.Fatal(err)
		}
	}
	if took := time.Since(start); took > 10*20*time.Millisecond {
		t.Fatalf("10 lone appends took %v: lingered on every commit", took)
	}
}

// The linger grows with slow commits, up to a bound, and never below the
// configured one.
func TestLingerFor(t *testing.T) {
	for _, tc := range []struct {
		base, commit, want time.Duration
	}{
		{500 * time.Microsecond, 150 * time.Microsecond, 500 * time.Microsecond}, // fast disk: unchanged
		{500 * time.Microsecond, 20 * time.Millisecond, 10 * time.Millisecond},   // two 10 ms fsyncs
		{500 * time.Microsecond, 3 * time.Second, maxLinger},                     // a stalled disk
		{time.Hour, 20 * time.Millisecond, time.Hour},                            // the configured one wins
	} {
		if got := lingerFor(tc.base, tc.commit); got != tc.want {
			t.Errorf("lingerFor(%v, %v) = %v, want %v", tc.base, tc.commit, got, tc.want)
		}
	}
}
