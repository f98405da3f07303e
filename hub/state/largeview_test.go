package state

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"linli/hub/downlink"
	"linli/hub/store"
	"linli/shared/event"
	"linli/shared/hlc"
	"linli/shared/merge"
	"linli/shared/test/storetest"
	"linli/shared/test/testkit"
	"linli/shared/wire"
)

// capturePub keeps what the downlink publishes.
type capturePub struct {
	mu   sync.Mutex
	msgs [][]byte
}

func (c *capturePub) Publish(_ string, payload []byte, _ bool) error {
	c.mu.Lock()
	c.msgs = append(c.msgs, payload)
	c.mu.Unlock()
	return nil
}

// activityViews decodes every published message as an edge does (a
// delta patches the version before it) and returns the views of activity
// id in order.
func (c *capturePub) activityViews(t *testing.T, id string) []merge.ActivityView {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []merge.ActivityView
	var held wire.Change
	for _, m := range c.msgs {
		d, err := wire.DecodeDown(m)
		if err != nil {
			t.Fatalf("an edge refuses a downlink message of %d bytes: %v", len(m), err)
		}
		for _, ch := range d.Changes {
			if ch.Entity == wire.EntityActivity && ch.ID == id && !ch.Deleted {
				if ch.Delta != nil {
					if ch.Base != held.Seq {
						t.Fatalf("delta of change %d from version %d; the version before is %d", ch.Seq, ch.Base, held.Seq)
					}
					if ch.Body, err = wire.Patch(held.Body, ch.Delta); err != nil {
						t.Fatalf("patch change %d: %v", ch.Seq, err)
					}
				}
				held = ch
				var v merge.ActivityView
				if err := event.UnmarshalOwn(ch.Body, &v); err != nil {
					t.Fatalf("activity view: %v", err)
				}
				out = append(out, v)
			}
		}
	}
	return out
}

func openStateWith(t *testing.T, st store.Backend, pub downlink.Publisher, log *slog.Logger) (*State, *downlink.Log) {
	t.Helper()
	clock := hlc.NewClock(nil, 0)
	down, err := downlink.Open(st, pub, clock, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(Options{Store: st, Downlink: down, Clock: clock, HubID: "hub",
		Kiosks: func(string) []string { return nil }, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	return s, down
}

// checkins folds n check-ins of distinct residents to activity, from seq
// first on, in commits of 5,000.
func checkins(t *testing.T, st store.Backend, s *State, activity string, first, n int) {
	t.Helper()
	for i := 0; i < n; i += 5000 {
		var evs []event.Event
		for j := i; j < min(i+5000, n); j++ {
			seq := uint64(first + j)
			evs = append(evs, edgeEvent(t, "k1", seq, &event.Checkin{Resident: fmt.Sprintf("R%d", seq), Activity: activity, Action: "in"}))
		}
		ingestEvents(t, st, s, evs)
	}
}

// An activity whose waitlist outgrows the element limit of outside input
// (131,072) still goes down in a message edges accept, and the hub reads
// its downlink log back at its next start and in a catch-up. Before, every
// edge of the site refused the message, and so every later one, and the
// hub could not restart.
func TestLargeViewCrossesTheDownlink(t *testing.T) {
	storetest.ForEach(t, testLargeViewCrossesTheDownlink)
}

func testLargeViewCrossesTheDownlink(t *testing.T, st storetest.Store, reopen func() storetest.Store) {
	const n = 140_000
	log := slog.New(slog.DiscardHandler)
	pub := &capturePub{}
	s, _ := openStateWith(t, st, pub, log)
	if _, err := s.Record(&event.ActivitySet{ID: "A1", Title: "义诊 Clinic", Type: "activity", Site: testSite, Capacity: 10}); err != nil {
		t.Fatal(err)
	}
	checkins(t, st, s, "A1", 1, n)
	vs := pub.activityViews(t, "A1")
	if len(vs) == 0 {
		t.Fatal("no view of A1 sent down")
	}
	if last := vs[len(vs)-1]; len(last.Confirmed)+len(last.Waitlist) != n || len(last.Waitlist) <= 1<<17 {
		t.Fatalf("last view sent: %d confirmed, %d waitlisted; want %d in all, over 131,072 waitlisted", len(last.Confirmed), len(last.Waitlist), n)
	}
	// The hub's next start reads the stored change back, and a kiosk that
	// asks for everything gets it.
	st = reopen()
	again := &capturePub{}
	_, down := openStateWith(t, st, again, log)
	if err := down.CatchUp(testSite, "k1", 0); err != nil {
		t.Fatalf("catch-up: %v", err)
	}
	if vs := again.activityViews(t, "A1"); len(vs) != 1 || len(vs[0].Waitlist) != n-10 {
		t.Fatalf("catch-up sent %d views of A1; want one with %d waitlisted", len(vs), n-10)
	}
}

// A view too large for any downlink message is not sent (edges keep its
// last version, and the site's other changes still go down); the hub logs
// it.
func TestOversizedViewIsNotSent(t *testing.T) {
	old := maxViewBytes
	maxViewBytes = 4 << 10
	t.Cleanup(func() { maxViewBytes = old })
	storetest.ForEach(t, func(t *testing.T, st storetest.Store, _ func() storetest.Store) { testOversizedViewIsNotSent(t, st) })
}

func testOversizedViewIsNotSent(t *testing.T, st store.Backend) {
	logs := &testkit.SyncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	pub := &capturePub{}
	s, _ := openStateWith(t, st, pub, log)
	if _, err := s.Record(&event.ActivitySet{ID: "A1", Title: "x", Type: "activity", Site: testSite, Capacity: 1000}); err != nil {
		t.Fatal(err)
	}
	checkins(t, st, s, "A1", 1, 100) // ~600 bytes of residents: sent
	small := pub.activityViews(t, "A1")
	checkins(t, st, s, "A1", 101, 1000) // over 4 KiB: not sent
	if _, err := s.Record(&event.ActivitySet{ID: "A2", Title: "y", Type: "activity", Site: testSite, Capacity: 5}); err != nil {
		t.Fatal(err)
	}
	if vs := pub.activityViews(t, "A1"); len(vs) != len(small) || len(vs[len(vs)-1].Confirmed) != 100 {
		t.Fatalf("views of A1 sent: %d (had %d before it outgrew the limit)", len(vs), len(small))
	}
	if vs := pub.activityViews(t, "A2"); len(vs) != 1 {
		t.Fatalf("views of A2 sent after A1 outgrew the limit: %d, want 1", len(vs))
	}
	if !strings.Contains(logs.String(), "view too large to send down") {
		t.Fatalf("no error logged:\n%s", logs.String())
	}
}
