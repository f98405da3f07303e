package state

import (
	"errors"
	"log/slog"
	"sync"
	"testing"

	"linli/hub/downlink"
	"linli/hub/store"
	"linli/shared/event"
	"linli/shared/hlc"
	"linli/shared/merge"
	"linli/shared/test/storetest"
	"linli/shared/wire"
)

// worker is one hub worker's merged state and downlink over a shared
// store, holding the sites in held.
type worker struct {
	*State
	down *downlink.Log

	mu     sync.Mutex
	held   map[string]bool
	kiosks []string
}

func openWorker(t *testing.T, st store.Backend, id string, held ...string) *worker {
	t.Helper()
	w := &worker{held: map[string]bool{}}
	for _, s := range held {
		w.held[s] = true
	}
	clock := hlc.NewClock(nil, 0)
	log := slog.New(slog.DiscardHandler)
	var err error
	if w.down, err = downlink.Open(st, discardPub{}, clock, nil, log); err != nil {
		t.Fatal(err)
	}
	w.State, err = Open(Options{Store: st, Downlink: w.down, Clock: clock, HubID: id, Logger: log,
		Kiosks: func(string) []string { w.mu.Lock(); defer w.mu.Unlock(); return w.kiosks },
		Owns:   func(site string) bool { w.mu.Lock(); defer w.mu.Unlock(); return w.held[site] }})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func (w *worker) hold(site string, on bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.held[site] = on
}

func (w *worker) setKiosks(k ...string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.kiosks = k
}

func (w *worker) decideNow(site string) {
	w.writeMu.Lock()
	defer w.writeMu.Unlock()
	w.decide([]string{site})
}

// grants counts the stored seat grants of activity to kiosk.
func grants(t *testing.T, st store.Backend, activity, kiosk string) int {
	t.Helper()
	n := 0
	err := st.View(func(v store.View) error {
		return v.Scan([]byte(prefixFact), nil, 0, func(key, val []byte, _ uint64) (bool, error) {
			fs, _, err := readFacts(v, key, val)
			if err != nil {
				return false, err
			}
			for _, f := range fs {
				if b, err := f.Event.Decode(); err == nil {
					if g, ok := b.(*event.Grant); ok && g.Activity == activity && g.Kiosk == kiosk {
						n++
					}
				}
			}
			return true, nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func hasActivity(w *worker, id string) bool {
	ok := false
	w.Read(func(m *merge.State) { _, err := m.Activity(id); ok = err == nil })
	return ok
}

// Two workers on one store: each decides for its own sites only, numbers
// its decisions under its own id and counter, refuses an operator
// decision for the other's site, follows the other's commits read-only,
// and, taking a site over, folds what its previous owner committed
// before deciding: a seat granted there is not granted again, and the
// site's downlink goes on from the stored head.
func TestWorkersShareOneStore(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, st storetest.Store, _ func() storetest.Store) {
		w1 := openWorker(t, st, "w1", "s1")
		w2 := openWorker(t, st, "w2", "s2")

		if _, err := w1.Record(&event.ActivitySet{ID: "A1", Title: "太极", Type: "activity", Site: "s1", Capacity: 20}); err != nil {
			t.Fatal(err)
		}
		if _, err := w2.Record(&event.ActivitySet{ID: "A2", Title: "义诊", Type: "activity", Site: "s2", Capacity: 20}); err != nil {
			t.Fatal(err)
		}
		_, err := w2.Record(&event.ActivitySet{ID: "A3", Title: "x", Type: "activity", Site: "s1", Capacity: 1})
		var no *NotOwnedError
		if !errors.As(err, &no) || no.Site != "s1" || !errors.Is(err, ErrNotOwned) {
			t.Fatalf("w2 recording for w1's site: %v, want a NotOwnedError for s1", err)
		}

		// Each worker's own counter; neither touched h/seq.
		err = st.View(func(v store.View) error {
			for key, want := range map[string]uint64{"h/seq/w1": 1, "h/seq/w2": 1, "h/seq": 0} {
				if got, err := store.GetU64(v, []byte(key)); err != nil || got != want {
					t.Errorf("%s = %d, %v; want %d", key, got, err, want)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}

		// w2 follows w1's site read-only and decides nothing for it.
		if hasActivity(w2, "A1") {
			t.Fatal("w2 shows A1 before following")
		}
		if err := w2.Follow(); err != nil {
			t.Fatal(err)
		}
		if !hasActivity(w2, "A1") {
			t.Fatal("w2 does not show A1 after following")
		}
		w2.setKiosks("k1")
		w2.decideNow("s1")
		if n := grants(t, st, "A1", "k1"); n != 0 {
			t.Fatalf("w2 granted %d seats of w1's site", n)
		}
		downHead := w2.down.Head("s1")

		// w1 grants k1 its share; w2 has not followed since.
		w1.setKiosks("k1")
		w1.decideNow("s1")
		if n := grants(t, st, "A1", "k1"); n != 1 {
			t.Fatalf("w1 granted %d times, want once", n)
		}
		head := w1.down.Head("s1")
		if head <= downHead {
			t.Fatalf("w1's grant sent nothing down (head %d)", head)
		}

		// s1 moves to w2, which loads it before deciding for it.
		w1.hold("s1", false)
		if err := w2.LoadSite("s1"); err != nil {
			t.Fatal(err)
		}
		if err := w2.down.LoadSite("s1"); err != nil {
			t.Fatal(err)
		}
		w2.hold("s1", true)
		if got := w2.down.Head("s1"); got != head {
			t.Fatalf("w2's downlink head of s1 after loading it: %d, want the stored %d", got, head)
		}
		w2.decideNow("s1")
		if n := grants(t, st, "A1", "k1"); n != 1 {
			t.Fatalf("after the handover A1 was granted to k1 %d times, want once", n)
		}
		if _, err := w2.Record(&event.NoticeSet{ID: "N1", Site: "s1", Title: "停水", Category: "safety"}); err != nil {
			t.Fatal(err)
		}
		if got := w2.down.Head("s1"); got != head+1 {
			t.Fatalf("w2's downlink head of s1 after a notice: %d, want %d", got, head+1)
		}
		// w1, no longer holding s1, reads the notice's change from the
		// store's index, which every worker shares.
		want, _ := w2.down.Seq("s1", wire.EntityNotice, "N1")
		if got, ok, err := w1.down.StoredSeq("s1", wire.EntityNotice, "N1"); err != nil || !ok || got != want || want == 0 {
			t.Fatalf("w1's stored seq of N1: %d, %v, %v; want w2's %d", got, ok, err, want)
		}
		if got, ok := w1.down.Seq("s1", wire.EntityNotice, "N1"); !ok || got != want {
			t.Fatalf("w1's seq of N1: %d, %v; want w2's %d", got, ok, want)
		}
		if _, err := w1.Erase("s1", "R1"); !errors.Is(err, ErrNotOwned) {
			t.Fatalf("w1 erasing a resident of the site it gave up: %v, want ErrNotOwned", err)
		}
		if _, err := w1.Record(&event.NoticeSet{ID: "N2", Site: "s1", Title: "x", Category: "safety"}); !errors.Is(err, ErrNotOwned) {
			t.Fatalf("w1 recording for the site it gave up: %v, want ErrNotOwned", err)
		}
	})
}
