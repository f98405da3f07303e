package retention

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"linli/hub/store"
	"linli/shared/event"
	"linli/shared/hlc"
	"linli/shared/kv"
	"linli/shared/test/poll"
)

// A restarted hub does not read every stored event again at once: the
// pass is due Every after the last complete one the store recorded, and
// only a store without one, or with one overdue, is passed over at start.
func TestRunWaitsForTheNextDuePass(t *testing.T) {
	const every = time.Hour
	now := time.UnixMilli(time.Now().UnixMilli()) // the store keeps milliseconds
	tests := []struct {
		name     string
		lastAgo  time.Duration // 0: no pass recorded
		wantWait time.Duration // before the first pass; 0: it runs at once
	}{
		{"no pass recorded: at once", 0, 0},
		{"last pass 10 minutes ago: in 50 minutes", 10 * time.Minute, 50 * time.Minute},
		{"last pass 2 hours ago: overdue, at once", 2 * time.Hour, 0},
		{"last pass in the future (clock set back): within Every", -3 * time.Hour, every},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, err := store.Open(filepath.Join(t.TempDir(), "store"), kv.Small, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			ev, err := event.NewEvent("gw-1", 1, hlc.FromTime(now.Add(-200*24*time.Hour)),
				&event.Reading{Sensor: "T1", Type: "temperature", Value: 20})
			if err != nil {
				t.Fatal(err)
			}
			b := st.NewBatch()
			stored := ev
			stored.Device = ""
			enc, err := stored.Encode()
			if err != nil {
				t.Fatal(err)
			}
			b.PutEvent("s1", &ev, enc)
			if err := b.Commit(); err != nil {
				t.Fatal(err)
			}
			if tc.lastAgo != 0 {
				if err := st.RecordExpiryPass(now.Add(-tc.lastAgo)); err != nil {
					t.Fatal(err)
				}
			}
			held := func() int {
				evs, err := st.Events("s1", "gw-1", 0, 10)
				if err != nil {
					t.Fatal(err)
				}
				return len(evs)
			}

			waits := make(chan time.Duration, 1)
			fire := make(chan time.Time)
			l := New(Options{Store: st, Keep: map[event.Kind]time.Duration{event.KindReading: 90 * 24 * time.Hour}, Every: every,
				Now: func() time.Time { return now },
				After: func(d time.Duration) <-chan time.Time {
					waits <- d
					return fire
				},
				Logger: slog.New(slog.DiscardHandler)})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { l.Run(ctx); close(done) }()
			defer func() { cancel(); <-done }()
			nextWait := func() time.Duration {
				t.Helper()
				select {
				case d := <-waits:
					return d
				case <-time.After(10 * time.Second):
					t.Fatal("Run did not wait for a pass to fall due")
				}
				return 0
			}

			if tc.wantWait > 0 {
				if d := nextWait(); d != tc.wantWait {
					t.Fatalf("first wait %v, want %v", d, tc.wantWait)
				}
				if n := held(); n != 1 {
					t.Fatalf("%d events held before the pass was due, want the 1 stored", n)
				}
				fire <- now
			}
			poll.Eventually(t, 10*time.Second, func() (bool, string) {
				n := held()
				return n == 0, fmt.Sprintf("%d events held, want the expired reading deleted", n)
			})
			if d := nextWait(); d != every {
				t.Errorf("wait after the pass %v, want %v", d, every)
			}
			last, err := st.LastExpiryPass()
			if err != nil || last.UnixMilli() != now.UnixMilli() {
				t.Errorf("last pass recorded %v (%v), want %v", last, err, now)
			}
		})
	}
}
