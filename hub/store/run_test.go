package store

import (
	"fmt"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"linli/shared/event"
)

// putRuns stores, in one batch each, the given stretches of a device's
// seqs (each batch's events one after the other, as ingest gives them),
// and returns every stored seq.
func putRuns(t *testing.T, s *Store, site, device string, stretches ...[2]uint64) {
	t.Helper()
	for _, st := range stretches {
		b := s.NewBatch()
		for seq := st[0]; seq <= st[1]; seq++ {
			ev, err := event.NewEvent(device, seq, 0, &event.Vote{Report: "k1.1", Resident: fmt.Sprintf("R%d", seq)})
			if err != nil {
				t.Fatal(err)
			}
			stored := ev
			stored.Device = ""
			enc, err := stored.Encode()
			if err != nil {
				t.Fatal(err)
			}
			b.PutEvent(site, &ev, enc)
		}
		if err := b.Commit(); err != nil {
			t.Fatal(err)
		}
	}
}

func voter(t *testing.T, ev event.Event) string {
	t.Helper()
	body, err := ev.Decode()
	if err != nil {
		t.Fatal(err)
	}
	return body.(*event.Vote).Resident
}

// Events given one after the other are stored as runs, and every way of
// reading events finds each one in them: from any seq on (Events), one by
// one in and out of order (EventReader), and page by page with pages that
// end inside a run (ScanEvents). A seq stored again is kept once.
func TestRunsReadLikeEvents(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	// 1-2500 in runs of at most 1,000, a lone 2502, then 2503-2600; 100-200
	// sent again (kept once); another device around it.
	putRuns(t, s, "s1", "gw-b", [2]uint64{1, 2500}, [2]uint64{2502, 2502}, [2]uint64{2503, 2600}, [2]uint64{100, 200})
	putRuns(t, s, "s1", "gw-a", [2]uint64{1, 30})
	putRuns(t, s, "s1", "gw-c", [2]uint64{5, 9})
	var want []uint64
	for seq := uint64(1); seq <= 2600; seq++ {
		if seq != 2501 {
			want = append(want, seq)
		}
	}

	for _, after := range []uint64{0, 1, 999, 1000, 1001, 2499, 2500, 2501, 2502, 2600} {
		evs, err := s.Events("s1", "gw-b", after, 5000)
		if err != nil {
			t.Fatal(err)
		}
		var got []uint64
		for _, ev := range evs {
			got = append(got, ev.Seq)
			if ev.Device != "gw-b" || voter(t, ev) != fmt.Sprintf("R%d", ev.Seq) {
				t.Fatalf("after %d: event %s.%d holds %q", after, ev.Device, ev.Seq, voter(t, ev))
			}
		}
		var exp []uint64
		for _, seq := range want {
			if seq > after {
				exp = append(exp, seq)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(exp) {
			t.Fatalf("Events after %d: %d events %v…, want %d", after, len(got), got[:min(5, len(got))], len(exp))
		}
	}
	if evs, err := s.Events("s1", "gw-b", 997, 5); err != nil || len(evs) != 5 || evs[0].Seq != 998 || evs[4].Seq != 1002 {
		t.Fatalf("Events after 997, limit 5: %v, %v", evs, err)
	}

	err := s.DB().View(func(txn *badger.Txn) error {
		r := NewEventReader(txn)
		defer r.Close()
		for _, seq := range []uint64{1, 2, 999, 1000, 1001, 2500, 2502, 2503, 7, 2600, 1500, 3, 150} {
			ev, err := r.Event("s1", "gw-b", seq)
			if err != nil || ev.Seq != seq || voter(t, ev) != fmt.Sprintf("R%d", seq) {
				t.Fatalf("EventReader %d: %d %v", seq, ev.Seq, err)
			}
		}
		for _, seq := range []uint64{2501, 2601, 0} {
			if _, err := r.Event("s1", "gw-b", seq); err != ErrNotFound {
				t.Fatalf("EventReader %d: %v, want ErrNotFound", seq, err)
			}
		}
		if _, err := r.Event("s1", "gw-c", 4); err != ErrNotFound {
			t.Fatalf("EventReader gw-c 4: %v, want ErrNotFound", err)
		}
		if ev, err := r.Event("s1", "gw-a", 30); err != nil || ev.Seq != 30 {
			t.Fatalf("EventReader gw-a 30: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	var all []string
	var cursor []byte
	for pages := 0; ; pages++ {
		evs, next, err := s.ScanEvents("s1", cursor, 333)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range evs {
			all = append(all, fmt.Sprintf("%s.%d", ev.Device, ev.Seq))
		}
		if next == nil {
			break
		}
		if pages > 100 {
			t.Fatal("ScanEvents does not end")
		}
		cursor = next
	}
	var exp []string
	for seq := 1; seq <= 30; seq++ {
		exp = append(exp, fmt.Sprintf("gw-a.%d", seq))
	}
	for _, seq := range want {
		exp = append(exp, fmt.Sprintf("gw-b.%d", seq))
	}
	for seq := 5; seq <= 9; seq++ {
		exp = append(exp, fmt.Sprintf("gw-c.%d", seq))
	}
	if fmt.Sprint(all) != fmt.Sprint(exp) {
		t.Fatalf("ScanEvents gave %d events, want %d in key order", len(all), len(exp))
	}
}

// An erasure rewrites an event inside its run: that event changes, the
// rest of the run stays, nothing is stored twice.
func TestRewriteEventInRun(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	putRuns(t, s, "s1", "gw-b", [2]uint64{1, 50})
	b := s.NewBatch()
	for _, seq := range []uint64{7, 8, 50} {
		ev, err := event.NewEvent("gw-b", seq, 0, &event.Vote{Report: "k1.1", Resident: "anon"})
		if err != nil {
			t.Fatal(err)
		}
		stored := ev
		stored.Device = ""
		enc, err := stored.Encode()
		if err != nil {
			t.Fatal(err)
		}
		b.RewriteEvent("s1", &ev, enc)
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	evs, err := s.Events("s1", "gw-b", 0, 100)
	if err != nil || len(evs) != 50 {
		t.Fatalf("%d events, %v; want 50", len(evs), err)
	}
	for _, ev := range evs {
		want := fmt.Sprintf("R%d", ev.Seq)
		if ev.Seq == 7 || ev.Seq == 8 || ev.Seq == 50 {
			want = "anon"
		}
		if got := voter(t, ev); got != want {
			t.Fatalf("event %d holds %q, want %q", ev.Seq, got, want)
		}
	}
}
