package merge_test

import (
	"cmp"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"pgregory.net/rapid"

	"linli/shared/event"
	"linli/shared/hlc"
	"linli/shared/merge"
)

const act = "A1"

// kioskSim is a kiosk edge reduced to what the escrow needs: its clock,
// its outbox of events the hub has not received, its ledger and its
// replica of the activity.
type kioskSim struct {
	id      string
	online  bool
	skew    int64 // its wall clock runs this many ms off
	clock   *hlc.Clock
	seq     uint64
	queue   []event.Event // recorded, not delivered yet
	all     []event.Event // everything it recorded, for resends
	ledger  *merge.Ledger
	view    *merge.ActivityView
	answers map[string]string // resident → the kiosk's last answer
}

// escrowSim is a hub and its kiosks, with a simulated wall clock, plus the
// ground truth the invariants are checked against.
type escrowSim struct {
	t        tb
	hub      *merge.State
	hubClock *hlc.Clock
	hubSeq   uint64
	now      int64
	capacity uint32
	kiosks   []*kioskSim
	ids      []string

	told      map[string]bool // residents told "confirmed" by a kiosk or promoted by the hub
	delivered map[string]bool // of those, the ones whose confirmation the hub holds
	left      map[string]bool // residents who checked out somewhere, delivered or not
	checkedIn map[string]bool
}

func newEscrowSim(t tb, capacity uint32, skews []int64) *escrowSim {
	s := &escrowSim{t: t, hub: merge.New(), capacity: capacity, told: map[string]bool{}, delivered: map[string]bool{},
		left: map[string]bool{}, checkedIn: map[string]bool{}}
	s.hubClock = hlc.NewClock(func() time.Time { return time.UnixMilli(base + s.now) }, 0)
	for i, skew := range skews {
		k := &kioskSim{id: fmt.Sprintf("k%d", i+1), skew: skew, ledger: merge.NewLedger(act), answers: map[string]string{}}
		k.clock = hlc.NewClock(func() time.Time { return time.UnixMilli(base + s.now + k.skew) }, 0)
		s.kiosks = append(s.kiosks, k)
		s.ids = append(s.ids, k.id)
	}
	s.record("hub", nil, &event.ActivitySet{ID: act, Title: "春节联欢", Type: "culture", Site: site, Capacity: capacity})
	return s
}

// record makes an event of device (the hub when k is nil); the hub applies
// its own at once, a kiosk queues it for delivery.
func (s *escrowSim) record(device string, k *kioskSim, body event.Body) event.Event {
	s.t.Helper()
	var (
		ev  event.Event
		err error
	)
	if k == nil {
		s.hubSeq++
		ev, err = event.NewEvent(device, s.hubSeq, s.hubClock.Now(), body)
	} else {
		k.seq++
		ev, err = event.NewEvent(k.id, k.seq, k.clock.Now(), body)
	}
	if err != nil {
		s.t.Fatalf("new event: %v", err)
	}
	if k == nil {
		s.apply(ev)
		return ev
	}
	k.queue = append(k.queue, ev)
	k.all = append(k.all, ev)
	k.ledger.Record(body) // after the (simulated) durable write
	return ev
}

func (s *escrowSim) apply(ev event.Event) {
	s.t.Helper()
	if _, err := s.hub.Apply(merge.Fact{Site: site, Event: ev}); err != nil {
		s.t.Fatalf("hub apply %s: %v", ev.ID(), err)
	}
	s.hubClock.Observe(ev.HLC)
	body, _ := ev.Decode()
	switch b := body.(type) {
	case *event.Checkin:
		if b.Action == "in" && b.Status == event.StatusConfirmed {
			s.delivered[b.Resident] = true
		}
	case *event.Promote:
		s.told[b.Resident], s.delivered[b.Resident] = true, true
	}
}

// checkin answers a resident at kiosk k; an online kiosk sends the event at
// once when send is set (otherwise it sits in the outbox for a while).
func (s *escrowSim) checkin(k *kioskSim, resident string, send bool) string {
	hubConfirmed := k.view != nil && slices.Contains(k.view.Confirmed, resident)
	hubMaySeat := k.view != nil && k.ledger.HubMaySeat(k.view)
	answer, status := k.ledger.Decide(resident, hubConfirmed, hubMaySeat)
	if answer == event.StatusWaitlisted && k.view != nil && int64(k.view.SeatsLeft) > int64(len(k.ledger.Residents))+int64(k.ledger.Available()) {
		s.t.Fatalf("kiosk %s told %s full while its view shows %d seats left", k.id, resident, k.view.SeatsLeft)
	}
	if hubConfirmed && answer != event.StatusConfirmed {
		s.t.Fatalf("kiosk %s told %s %q, but its replica shows them confirmed", k.id, resident, answer)
	}
	s.record(k.id, k, &event.Checkin{Resident: resident, Activity: act, Action: "in", Status: status})
	k.answers[resident] = answer
	s.checkedIn[resident] = true
	if answer == event.StatusConfirmed {
		s.told[resident] = true
	}
	if k.online && send {
		s.deliver(k)
	}
	return answer
}

func (s *escrowSim) checkout(k *kioskSim, resident string, send bool) {
	s.record(k.id, k, &event.Checkin{Resident: resident, Activity: act, Action: "out"})
	s.left[resident] = true
	if k.online && send {
		s.deliver(k)
	}
}

// deliver sends the kiosk's queue to the hub in order and syncs the
// activity back down, recording (and delivering) a release if asked.
func (s *escrowSim) deliver(k *kioskSim) {
	for len(k.queue) > 0 {
		for _, ev := range k.queue {
			s.apply(ev)
		}
		k.queue = nil
		s.sync(k)
	}
}

func (s *escrowSim) sync(k *kioskSim) {
	v, err := s.hub.ActivityView(act)
	if err != nil {
		s.t.Fatalf("activity view: %v", err)
	}
	k.view = &v
	k.clock.Observe(v.Updated)
	if rel := k.ledger.Sync(&v, k.id); rel != nil {
		s.record(k.id, k, rel)
	}
}

// decide runs the hub's policy, records its decisions and pushes the
// activity down to the kiosks that are online, whose uplink backlog may
// still be on its way. It returns how many decisions were made.
func (s *escrowSim) decide() int {
	bodies := s.hub.Decide(site, s.ids, hlc.New(base+s.now, 0))
	for _, b := range bodies {
		s.record("hub", nil, b)
	}
	for _, k := range s.kiosks {
		if k.online {
			s.sync(k)
		}
	}
	return len(bodies)
}

// check asserts the invariants that hold at every moment.
func (s *escrowSim) check() {
	s.t.Helper()
	a, err := s.hub.Activity(act)
	if err != nil {
		s.t.Fatalf("activity: %v", err)
	}
	if a.Seated > s.capacity {
		s.t.Fatalf("hub seats %d residents, capacity %d", a.Seated, s.capacity)
	}
	holding := 0 // residents told confirmed who have not left, wherever the news is
	for r := range s.told {
		if !s.left[r] {
			holding++
		}
	}
	if holding > int(s.capacity) {
		s.t.Fatalf("%d residents hold a confirmed seat, capacity %d", holding, s.capacity)
	}
	// The hub's reserve must be truly free: not held by a resident, nor
	// still confirmable by a kiosk, wherever the news is.
	free := int64(s.capacity) - int64(holding)
	for _, k := range s.kiosks {
		free -= int64(k.ledger.Available())
	}
	if a.Reserve > free {
		s.t.Fatalf("hub reserve %d, but only %d seats are free (%+v)", a.Reserve, free, a.Kiosks)
	}
	for r := range s.delivered {
		if s.hub.Outcome(act, r) != event.StatusConfirmed {
			s.t.Fatalf("%s's confirmation was revoked: outcome %q", r, s.hub.Outcome(act, r))
		}
	}
}

// settle brings every kiosk online and runs deliveries and decisions until
// nothing moves.
func (s *escrowSim) settle() {
	s.t.Helper()
	for _, k := range s.kiosks {
		k.online = true
	}
	for round := 0; ; round++ {
		if round > 20 {
			s.t.Fatal("decisions do not settle")
		}
		for _, k := range s.kiosks {
			s.deliver(k)
			s.sync(k)
			s.deliver(k)
		}
		s.check()
		if s.decide() == 0 {
			break
		}
		s.check()
	}
}

// checkSettled asserts what holds once everything is delivered and decided.
func (s *escrowSim) checkSettled() merge.Activity {
	s.t.Helper()
	a, _ := s.hub.Activity(act)
	want, _ := s.hub.ActivityView(act)
	for r := range s.checkedIn {
		c, w := slices.Contains(a.Confirmed, r), slices.Contains(a.Waitlist, r)
		if c == w {
			s.t.Fatalf("%s checked in: confirmed %v, waitlisted %v; want exactly one", r, c, w)
		}
	}
	for r := range s.told {
		if !slices.Contains(a.Confirmed, r) {
			s.t.Fatalf("%s was told confirmed but is not", r)
		}
	}
	for r := range s.left {
		if !slices.Contains(a.Left, r) {
			s.t.Fatalf("%s checked out but holds a seat", r)
		}
	}
	for _, r := range a.Waitlist {
		if !s.left[r] && a.Seated != s.capacity {
			s.t.Fatalf("%s still waits with %d of %d seats taken", r, a.Seated, s.capacity)
		}
	}
	for _, k := range s.kiosks {
		if !reflect.DeepEqual(*k.view, want) {
			s.t.Fatalf("kiosk %s sees %+v\nhub has %+v", k.id, *k.view, want)
		}
		sh := findKiosk(a, k.id)
		if k.ledger.Granted != sh.Granted || k.ledger.Used != sh.Used || k.ledger.Returned != sh.Returned {
			s.t.Fatalf("kiosk %s ledger %+v, hub's account %+v", k.id, *k.ledger, sh)
		}
		for r := range k.answers {
			if !slices.Contains(k.view.Confirmed, r) && !slices.Contains(k.view.Waitlist, r) {
				s.t.Fatalf("kiosk %s cannot show %s an outcome", k.id, r)
			}
		}
	}
	return a
}

func findKiosk(a merge.Activity, id string) merge.KioskLedger {
	for _, k := range a.Kiosks {
		if k.Device == id {
			return k
		}
	}
	return merge.KioskLedger{Device: id}
}

// TestEscrowProperty simulates the whole escrow under random interleavings
// of check-ins and check-outs at random kiosks, kiosks going offline and
// reconnecting, resends, clock skew and hub decisions.
func TestEscrowProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(1, 4).Draw(t, "kiosks")
		skews := make([]int64, n)
		for i := range skews {
			skews[i] = rapid.Int64Range(-2000, 2000).Draw(t, "skew")
		}
		s := newEscrowSim(t, rapid.Uint32Range(1, 12).Draw(t, "capacity"), skews)
		for _, k := range s.kiosks {
			k.online = rapid.Bool().Draw(t, "starts online")
		}
		if rapid.Bool().Draw(t, "grants first") {
			s.decide()
		}
		resident := rapid.SampledFrom([]string{"R01", "R02", "R03", "R04", "R05", "R06", "R07", "R08", "R09", "R10",
			"R11", "R12", "R13", "R14", "R15", "R16", "R17", "R18"})
		kiosk := rapid.SampledFrom(s.kiosks)
		steps := rapid.IntRange(0, 120).Draw(t, "steps")
		for range steps {
			s.now += rapid.Int64Range(0, 60_000).Draw(t, "tick")
			switch rapid.IntRange(0, 12).Draw(t, "action") {
			case 0, 1, 2, 3:
				s.checkin(kiosk.Draw(t, "kiosk"), resident.Draw(t, "resident"), rapid.Bool().Draw(t, "send"))
			case 4:
				if len(s.checkedIn) > 0 {
					in := slices.Sorted(func(yield func(string) bool) {
						for r := range s.checkedIn {
							if !yield(r) {
								return
							}
						}
					})
					s.checkout(kiosk.Draw(t, "kiosk"), rapid.SampledFrom(in).Draw(t, "leaver"), rapid.Bool().Draw(t, "send"))
				}
			case 5, 6:
				k := kiosk.Draw(t, "kiosk")
				k.online = !k.online
				if k.online && rapid.Bool().Draw(t, "resume at once") {
					s.deliver(k)
					s.sync(k)
					s.deliver(k)
				}
			case 7, 8:
				s.decide()
			case 9:
				// A resend after a lost ack: the hub gets old events again.
				k := kiosk.Draw(t, "kiosk")
				if k.online && len(k.all) > 0 {
					from := rapid.IntRange(0, len(k.all)-1).Draw(t, "resend from")
					for _, ev := range k.all[from:] {
						s.apply(ev)
					}
				}
			case 11:
				if k := kiosk.Draw(t, "kiosk"); k.online {
					s.deliver(k)
				}
			case 10, 12:
				// Out of order and in part: some of the queue arrives now,
				// in any order (a priority batch, a lost batch resent later).
				k := kiosk.Draw(t, "kiosk")
				if k.online && len(k.queue) > 0 {
					perm := rapid.Permutation(k.queue).Draw(t, "arrival")
					n := rapid.IntRange(1, len(perm)).Draw(t, "arrived")
					for _, ev := range perm[:n] {
						s.apply(ev)
					}
					k.queue = perm[n:]
					slices.SortFunc(k.queue, func(a, b event.Event) int { return cmp.Compare(a.Seq, b.Seq) })
					s.sync(k)
				}
			}
			s.check()
		}
		s.settle()
		s.checkSettled()
	})
}

// TestEscrowScenario is the scenario: three kiosks go offline with
// their shares, 40 residents sign up for 30 seats across them (20/15/5),
// each kiosk answers at once, and they reconnect in every order.
func TestEscrowScenario(t *testing.T) {
	orders := [][]int{{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}}
	for _, order := range orders {
		t.Run(fmt.Sprint(order), func(t *testing.T) {
			s := newEscrowSim(t, 30, []int64{0, 300, -300})
			for _, k := range s.kiosks {
				k.online = true
				s.sync(k)
			}
			s.decide() // DefaultPolicy: 80% of 30 split in 3 → 8 each, 6 in reserve
			for _, k := range s.kiosks {
				if k.ledger.Granted != 8 {
					t.Fatalf("kiosk %s granted %d, want 8", k.id, k.ledger.Granted)
				}
				k.online = false
			}
			perKiosk := []int{20, 15, 5}
			told := 0
			r := 0
			for i := 0; i < 20; i++ { // interleave sign-ups across the kiosks
				for ki, n := range perKiosk {
					if i < n {
						s.now += 1000
						r++
						if s.checkin(s.kiosks[ki], fmt.Sprintf("R%02d", r), true) == event.StatusConfirmed {
							told++
						}
					}
				}
			}
			if told != 8+8+5 {
				t.Fatalf("kiosks confirmed %d offline, want 21", told)
			}
			for _, ki := range order {
				k := s.kiosks[ki]
				k.online = true
				s.deliver(k)
				s.sync(k)
				s.deliver(k)
				s.decide()
				s.check()
			}
			s.settle()
			a := s.checkSettled()
			if len(a.Confirmed) != 30 || len(a.Waitlist) != 10 || a.Seated != 30 {
				t.Fatalf("confirmed %d, waitlisted %d, seated %d; want 30, 10, 30", len(a.Confirmed), len(a.Waitlist), a.Seated)
			}
			if a.Reserve != 0 {
				t.Fatalf("reserve %d after settling, want 0", a.Reserve)
			}
			// The waitlist is in check-in order: sign-up times were
			// interleaved a second apart, far beyond the kiosks' skew.
			for i := 1; i < len(a.Waitlist); i++ {
				if a.Waitlist[i-1] > a.Waitlist[i] {
					t.Fatalf("waitlist %v is not in check-in order", a.Waitlist)
				}
			}
		})
	}
}
