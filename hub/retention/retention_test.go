package retention

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"linli/hub/store"
	"linli/shared/event"
	"linli/shared/hlc"
	"linli/shared/test/poll"
	"linli/shared/test/storetest"
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
			storetest.ForEach(t, func(t *testing.T, bst storetest.Store, _ func() storetest.Store) {
				st := bst.(expiringStore)
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
		})
	}
}

// expiringStore is either store with what the loop and the tests use.
type expiringStore interface {
	storetest.Store
	Store
}

// A pass deletes exactly the events of an expiring kind older than its
// cut-off that Keep does not hold on to, in transactions of at most Batch
// deletions, and keeps everything else, in both stores.
func TestExpireDeletesExactlyTheExpired(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, bst storetest.Store, _ func() storetest.Store) {
		st := bst.(expiringStore)
		now := time.Now()
		old, recent := now.Add(-100*24*time.Hour), now.Add(-time.Hour)
		b := st.NewBatch()
		want := map[string][]uint64{}
		for _, dev := range []string{"gw-1", "gw-2"} {
			for seq := uint64(1); seq <= 300; seq++ {
				at := old
				if seq%3 == 0 {
					at = recent
				}
				var body event.Body = &event.Reading{Sensor: "T1", Type: "temperature", Value: 20}
				if seq%5 == 0 {
					body = &event.Access{Door: "B1-main", Credential: "h:x", Result: "forced"} // kept: Keep says so
				}
				ev, err := event.NewEvent(dev, seq, hlc.FromTime(at), body)
				if err != nil {
					t.Fatal(err)
				}
				stored := ev
				stored.Device = ""
				enc, err := stored.Encode()
				if err != nil {
					t.Fatal(err)
				}
				b.PutEvent("s1", &ev, enc)
				if seq%3 == 0 || seq%5 == 0 {
					want[dev] = append(want[dev], seq)
				}
			}
		}
		if err := b.Commit(); err != nil {
			t.Fatal(err)
		}
		e := store.Expiry{Before: map[event.Kind]time.Time{event.KindReading: now.Add(-90 * 24 * time.Hour), event.KindAccess: now.Add(-90 * 24 * time.Hour)},
			Keep:  func(_ string, ev *event.Event) bool { return ev.Kind == event.KindAccess },
			Batch: 50, Scan: 120}
		passes := 0
		n, err := st.Expire(e, func() bool { passes++; return false })
		if err != nil {
			t.Fatal(err)
		}
		deletedWant := 2 * (300 - 100 - 60 + 20) // not seq%3, not seq%5
		if n[event.KindReading] != deletedWant || len(n) != 1 {
			t.Fatalf("deleted %v, want %d readings", n, deletedWant)
		}
		if passes < deletedWant/e.Batch {
			t.Fatalf("%d transactions for %d deletions of at most %d each", passes, deletedWant, e.Batch)
		}
		for dev, seqs := range want {
			evs, err := st.Events("s1", dev, 0, 1000)
			if err != nil {
				t.Fatal(err)
			}
			var got []uint64
			for _, ev := range evs {
				got = append(got, ev.Seq)
			}
			if fmt.Sprint(got) != fmt.Sprint(seqs) {
				t.Fatalf("%s keeps %v, want %v", dev, got, seqs)
			}
		}
	})
}
