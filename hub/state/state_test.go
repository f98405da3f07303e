package state

import (
	"errors"
	"log/slog"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"linli/hub/downlink"
	"linli/hub/store"
	"linli/shared/event"
	"linli/shared/hlc"
	"linli/shared/kv"
	"linli/shared/merge"
	"linli/shared/test/storetest"
)

type discardPub struct{}

func (discardPub) Publish(string, []byte, bool) error { return nil }

const testSite = "s1"

// openState opens the merged state over the store in dir.
func openState(t *testing.T, st store.Backend) *State {
	t.Helper()
	s, _ := openStateWith(t, st, discardPub{}, slog.New(slog.DiscardHandler))
	return s
}

// ingestEvents commits edge events the way ingest does: each stored as the
// edge encoded it, then folded in the same commit.
func ingestEvents(t *testing.T, st store.Backend, s *State, evs []event.Event) {
	t.Helper()
	b := st.NewBatch()
	for i := range evs {
		stored := evs[i]
		stored.Device = ""
		enc, err := stored.Encode()
		if err != nil {
			t.Fatal(err)
		}
		b.PutEvent(testSite, &evs[i], enc)
	}
	if err := s.Apply(b, map[string][]event.Event{testSite: evs}); err != nil {
		s.Aborted()
		t.Fatal(err)
	}
	if err := b.Commit(); err != nil {
		s.Aborted()
		t.Fatal(err)
	}
	s.Committed()
}

func edgeEvent(t *testing.T, device string, seq uint64, body event.Body) event.Event {
	t.Helper()
	ev, err := event.NewEvent(device, seq, hlc.Timestamp(1_000_000+seq), body)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

type snapshot struct {
	Activities []merge.Activity
	Reports    []merge.Report
}

func views(s *State) snapshot {
	var out snapshot
	s.Read(func(m *merge.State) {
		out.Activities = m.Activities(testSite)
		out.Reports = m.Reports(testSite)
	})
	return out
}

// factValue reads the stored value of one fact key.
func factValue(t *testing.T, st store.Backend, device string, seq uint64) []byte {
	t.Helper()
	var v []byte
	err := st.View(func(view store.View) error {
		var err error
		v, _, err = view.Get(factKey(testSite, device, seq))
		return err
	})
	if err != nil {
		t.Fatalf("fact %s/%d: %v", device, seq, err)
	}
	return v
}

// An edge event's fact is a reference (the event is stored once, by
// ingest): one key per device and commit lists the seqs; a hub decision
// keeps its event in the fact. Both, and facts in the forms older hubs
// wrote (the whole event; an empty value for the key's own seq), rebuild
// the same state after a restart, and an erasure rewrites the one stored
// copy.
func TestFactsRebuildAfterRestart(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, st storetest.Store, _ func() storetest.Store) { testFactsRebuildAfterRestart(t, st) })
}

func testFactsRebuildAfterRestart(t *testing.T, st store.Backend) {
	s := openState(t, st)
	if _, err := s.Record(&event.ActivitySet{ID: "A1", Title: "太极拳 Tai chi", Type: "activity", Site: testSite, Capacity: 10}); err != nil {
		t.Fatal(err)
	}
	ingestEvents(t, st, s, []event.Event{
		edgeEvent(t, "k1", 1, &event.Checkin{Resident: "R1", Activity: "A1", Action: "in"}),
		edgeEvent(t, "k1", 2, &event.Report{Category: event.Categories[0], Title: "楼道灯不亮", Building: "B1", Resident: "R2"}),
		edgeEvent(t, "k1", 3, &event.Reading{Sensor: "t1", Type: "temperature", Value: 21}), // not a fact
	})
	// Facts far apart among a device's other events (the load steps to the
	// next one or seeks when it is far).
	var k5 []event.Event
	for seq := uint64(1); seq <= 40; seq++ {
		var body event.Body = &event.Reading{Sensor: "t1", Type: "temperature", Value: 20}
		if seq == 1 || seq == 5 || seq == 40 {
			body = &event.Checkin{Resident: "R5" + strconv.FormatUint(seq, 10), Activity: "A1", Action: "in"}
		}
		k5 = append(k5, edgeEvent(t, "k5", seq, body))
	}
	ingestEvents(t, st, s, k5)
	// A fact as older hubs stored it: the whole event beside the key.
	old := edgeEvent(t, "k2", 7, &event.Checkin{Resident: "R3", Activity: "A1", Action: "in"})
	b := st.NewBatch()
	enc, err := old.Encode()
	if err != nil {
		t.Fatal(err)
	}
	val, err := event.Marshal(storedFact{Site: testSite, Event: enc})
	if err != nil {
		t.Fatal(err)
	}
	b.Set(factKey(testSite, old.Device, old.Seq), val)
	// A fact that is only a key, referring to the event stored under it.
	ref := edgeEvent(t, "k3", 4, &event.Checkin{Resident: "R4", Activity: "A1", Action: "in"})
	stored := ref
	stored.Device = ""
	if enc, err = stored.Encode(); err != nil {
		t.Fatal(err)
	}
	b.PutEvent(testSite, &ref, enc)
	b.Set(factKey(testSite, ref.Device, ref.Seq), nil)
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}

	var seqs []uint64
	if err := event.Unmarshal(factValue(t, st, "k1", 1), &seqs); err != nil || !reflect.DeepEqual(seqs, []uint64{1, 2}) {
		t.Errorf("k1's facts of the commit: %v, %v; want one key listing seqs 1 and 2 (3 is a reading)", seqs, err)
	}
	if err := st.View(func(v store.View) error {
		_, _, err := v.Get(factKey(testSite, "k1", 2))
		return err
	}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a second fact key for k1 in one commit: %v", err)
	}
	if v := factValue(t, st, "hub", 1); len(v) == 0 {
		t.Error("a hub decision's fact is empty; nothing else stores the decision")
	}

	s2 := openState(t, st) // a restart: the state rebuilt from the store
	got := views(s2)
	if len(got.Activities) != 1 || len(got.Reports) != 1 {
		t.Fatalf("after restart: %d activities, %d reports, want 1 and 1", len(got.Activities), len(got.Reports))
	}
	residents := map[string]bool{}
	for _, c := range append(got.Activities[0].Confirmed, got.Activities[0].Waitlist...) {
		residents[c] = true
	}
	if !residents["R51"] || !residents["R55"] || !residents["R540"] {
		t.Errorf("after restart the activity holds %v, want R51, R55 and R540 (facts among 40 events of k5)", residents)
	}
	if !residents["R1"] || !residents["R3"] || !residents["R4"] {
		t.Errorf("after restart the activity holds %v, want R1 (listed seqs), R3 (whole event) and R4 (key only)", residents)
	}
	if want := views(s); !reflect.DeepEqual(got.Reports, want.Reports) {
		t.Errorf("reports after restart differ:\n got %+v\nwant %+v", got.Reports, want.Reports)
	}

	e, err := s2.Erase(testSite, "R1")
	if err != nil {
		t.Fatal(err)
	}
	if e.Facts != 2 { // R1's check-in (listed) and the hub's promotion of R1 (whole)
		t.Errorf("erasure rewrote %d facts, want 2", e.Facts)
	}
	evs, err := st.Events(testSite, "k1", 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if body, err := evs[0].Decode(); err != nil || body.(*event.Checkin).Resident != e.Token {
		t.Errorf("stored event after erasure: %+v, %v; want resident %s", body, err, e.Token)
	}
	// A fact in the older whole-event form holds its own copy of the
	// event, which the erasure rewrites as well as the stored one.
	e3, err := s2.Erase(testSite, "R3")
	if err != nil {
		t.Fatal(err)
	}
	if e3.Facts != 1 {
		t.Errorf("erasure of R3 rewrote %d facts, want 1", e3.Facts)
	}
	s3 := openState(t, st)
	a := views(s3).Activities[0]
	for _, c := range append(a.Confirmed, a.Waitlist...) {
		if c == "R1" || c == "R3" {
			t.Errorf("the erased resident %s is back after a restart", c)
		}
	}
}

// A fact key whose event is missing is reported, not folded as garbage.
func TestFactWithoutEventFailsLoad(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, st storetest.Store, _ func() storetest.Store) { testFactWithoutEventFailsLoad(t, st) })
}

func testFactWithoutEventFailsLoad(t *testing.T, st store.Backend) {
	b := st.NewBatch()
	b.Set(factKey(testSite, "k1", 9), nil)
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	clock := hlc.NewClock(nil, 0)
	down, err := downlink.Open(st, discardPub{}, clock, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Open(Options{Store: st, Downlink: down, Clock: clock, HubID: "hub", Kiosks: func(string) []string { return nil }, Logger: log})
	if err == nil || !strings.Contains(err.Error(), "not in the store") {
		t.Fatalf("open with a dangling fact: %v, want an error naming the missing event", err)
	}
}

func TestParseFactKey(t *testing.T) {
	tests := []struct {
		key          []byte
		site, device string
		seq          uint64
		ok           bool
	}{
		{factKey("s1", "kiosk-1", 42), "s1", "kiosk-1", 42, true},
		{factKey("s1", "k", 1<<40), "s1", "k", 1 << 40, true},
		{[]byte("f/s1/k1/"), "", "", 0, false},
		{kv.Key(prefixFact, []byte("s1k1/"), kv.U64(1)), "", "", 0, false},
		{kv.Key(prefixFact, []byte("s1/k1x"), kv.U64(1)), "", "", 0, false},
	}
	for _, tt := range tests {
		site, device, seq, ok := parseFactKey(tt.key)
		if site != tt.site || device != tt.device || seq != tt.seq || ok != tt.ok {
			t.Errorf("parseFactKey(%q) = %q, %q, %d, %v; want %q, %q, %d, %v", tt.key, site, device, seq, ok, tt.site, tt.device, tt.seq, tt.ok)
		}
	}
}
