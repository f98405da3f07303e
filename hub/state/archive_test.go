package state

import (
	"bytes"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"linli/hub/downlink"
	"linli/hub/store"
	"linli/shared/event"
	"linli/shared/hlc"
	"linli/shared/merge"
	"linli/shared/test/storetest"
)

// fakeWall is a wall clock the test moves by hand, in milliseconds.
type fakeWall struct{ ms atomic.Int64 }

func (w *fakeWall) now() time.Time        { return time.UnixMilli(w.ms.Load()) }
func (w *fakeWall) advance(d int64) int64 { return w.ms.Add(d) }

// historyWithEvictions runs a random history of reports, votes, ratings,
// reopens, check-ins, operator patches and activities that end, through
// ingest's commit and the operator's Record, taking snapshots (and so
// evicting what the hold makes cold) at random points with random holds.
// It returns the live state's full encoding and how many entities the
// archive holds.
func historyWithEvictions(t *testing.T, trial int, st store.Backend) (*State, []byte, int) {
	r := rand.New(rand.NewPCG(uint64(trial), 11))
	wall := &fakeWall{}
	wall.ms.Store(1_000_000)
	s := openState(t, st)
	s.opts.Clock = hlc.NewClock(wall.now, 0)
	s.opts.Build = "b1"
	var reports []string
	seqs := map[string]uint64{}
	res := func() string { return fmt.Sprintf("R%d", r.IntN(12)) }
	act := func() string { return fmt.Sprintf("A%d", r.IntN(4)) }
	report := func() string {
		if len(reports) == 0 {
			return "k9.1"
		}
		return reports[r.IntN(len(reports))]
	}
	for range 40 + r.IntN(60) {
		now := wall.advance(1 + r.Int64N(1<<22))
		if r.IntN(3) == 0 {
			var body event.Body
			switch r.IntN(3) {
			case 0:
				body = &event.ActivitySet{ID: act(), Title: "活动", Type: "activity", Site: testSite, Capacity: uint32(1 + r.IntN(5)),
					Start: now - r.Int64N(1<<23)}
				body.(*event.ActivitySet).End = body.(*event.ActivitySet).Start + 1 + r.Int64N(1<<23)
			default:
				if len(reports) == 0 {
					continue // the API refuses a patch of a report it does not hold
				}
				body = &event.ReportPatch{Report: report(), Who: "op", Note: fmt.Sprint("n", r.IntN(9)),
					Status: []string{"", event.ReportAccepted, event.ReportResolved, event.ReportResolved, event.ReportRejected}[r.IntN(5)]}
			}
			_, err := s.Record(body)
			if err != nil && !strings.Contains(err.Error(), "not found") {
				t.Fatal(err)
			}
		} else {
			device := []string{"k1", "k2"}[r.IntN(2)]
			var evs []event.Event
			for range 1 + r.IntN(5) {
				seqs[device]++
				var body event.Body
				switch r.IntN(6) {
				case 0, 1:
					body = &event.Report{Category: event.Categories[0], Title: "漏水", Building: "B1", Resident: res()}
					reports = append(reports, event.FormatID(device, seqs[device]))
				case 2:
					body = &event.Vote{Report: report(), Resident: res()}
				case 3:
					target := act()
					if r.IntN(2) == 0 {
						target = report()
					}
					body = &event.Rating{Resident: res(), Target: target, Score: 1 + r.IntN(5)}
				case 4:
					body = &event.ReportReopen{Report: report(), Resident: res(), Reason: "still"}
				default:
					body = &event.Checkin{Resident: res(), Activity: act(), Action: "in"}
				}
				ev, err := event.NewEvent(device, seqs[device], hlc.New(now-r.Int64N(1<<20), 0), body)
				if err != nil {
					t.Fatal(err)
				}
				evs = append(evs, ev)
			}
			ingestEvents(t, st, s, evs)
		}
		if r.IntN(8) == 0 {
			s.opts.Hold = time.Duration(1+r.Int64N(wall.ms.Load()-1_000_000)) * time.Millisecond
			if err := s.Snapshot(); err != nil {
				t.Fatal(err)
			}
		}
	}
	s.opts.Hold = time.Millisecond // what is closed leaves memory
	if err := s.Snapshot(); err != nil {
		t.Fatal(err)
	}
	s.mu.RLock()
	live, err := s.merged.EncodeAll()
	s.mu.RUnlock()
	if err != nil {
		t.Fatal(err)
	}
	return s, live, countArchived(t, st)
}

func countArchived(t *testing.T, st store.Backend) int {
	t.Helper()
	n := 0
	err := st.View(func(v store.View) error {
		for _, kind := range []string{merge.RefReport, merge.RefActivity} {
			err := v.Scan(archiveKey(kind, ""), nil, 0, func([]byte, []byte, uint64) (bool, error) { n++; return true, nil })
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Evicting cold entities at random points of random histories, paging
// them back in as later facts touch them, and restarting from the
// snapshot and the archive gives a state byte-identical to a rebuild from
// every fact that never evicted anything, and the readers see the same.
func TestArchivedStartEqualsFullRebuild(t *testing.T) {
	archived := 0
	for trial := range 8 {
		t.Run(fmt.Sprint(trial), func(t *testing.T) {
			storetest.ForEach(t, func(t *testing.T, st storetest.Store, reopen func() storetest.Store) {
				s, live, n := historyWithEvictions(t, trial, st)
				archived += n
				liveViews := views(s)
				st = reopen()

				var logs logBuf
				log := slog.New(slog.NewTextHandler(&logs, nil))
				down, err := downlink.Open(st, discardPub{}, hlc.NewClock(nil, 0), nil, log)
				if err != nil {
					t.Fatal(err)
				}
				s2, err := Open(Options{Store: st, Downlink: down, Clock: hlc.NewClock(nil, 0), HubID: "hub",
					Kiosks: func(string) []string { return nil }, Logger: log, Build: "b1"})
				if err != nil || !strings.Contains(logs.String(), "snapshot=true") {
					t.Fatalf("start from the snapshot: %v; %s", err, logs.String())
				}
				s2.mu.RLock()
				fromSnap, err := s2.merged.EncodeAll()
				inMemory, _ := s2.merged.Encode()
				s2.mu.RUnlock()
				if err != nil {
					t.Fatal(err)
				}
				if n > 0 && len(inMemory) >= len(fromSnap) {
					t.Errorf("%d archived entities, yet memory holds %d bytes of %d", n, len(inMemory), len(fromSnap))
				}
				s2v := views(s2)

				full, logs2 := encodeState(t, st, "b2") // another build: every fact, nothing archived
				if !strings.Contains(logs2, "snapshot=false") {
					t.Fatalf("another build's snapshot was used: %s", logs2)
				}
				if !bytes.Equal(fromSnap, full) || !bytes.Equal(live, full) {
					t.Fatalf("%d archived: state from snapshot+archive (%d bytes) or live (%d) differs from a full rebuild (%d)",
						n, len(fromSnap), len(live), len(full))
				}
				if fmt.Sprint(s2v) != fmt.Sprint(liveViews) {
					t.Fatalf("readers see different reports and activities after the restart")
				}
				if got := countArchived(t, st); got != 0 {
					t.Errorf("a full rebuild left %d archived entities", got)
				}
			})
		})
	}
	if archived == 0 {
		t.Fatal("no history archived anything: the test tests nothing")
	}
}

// An old closed report leaves memory, and then everything that touches it
// still works: reading it by id, a vote, a rating and a reopen (which
// page it back in), and lists that include it.
func TestArchivedReportStillAnswers(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, st storetest.Store, _ func() storetest.Store) {
		wall := &fakeWall{}
		wall.ms.Store(1_000_000)
		s := openState(t, st)
		s.opts.Clock = hlc.NewClock(wall.now, 0)
		s.opts.Hold = time.Hour
		ingestEvents(t, st, s, []event.Event{edgeEvent(t, "k1", 1, &event.Report{Category: event.Categories[0], Title: "漏水", Building: "B1",
			Resident: "R1", Number: "B1-0007"})})
		if _, err := s.Record(&event.ReportPatch{Report: "k1.1", Status: event.ReportResolved, Note: "修好了", Who: "op"}); err != nil {
			t.Fatal(err)
		}
		wall.advance(int64(2 * time.Hour / time.Millisecond))
		if err := s.Snapshot(); err != nil {
			t.Fatal(err)
		}
		if countArchived(t, st) != 1 {
			t.Fatalf("archived %d, want the resolved report", countArchived(t, st))
		}
		s.mu.RLock()
		inMemory, _ := s.merged.Encode()
		s.mu.RUnlock()
		if bytes.Contains(inMemory, []byte("k1.1")) {
			t.Fatal("the snapshot still holds the archived report")
		}
		read := func() (rep merge.Report, list []merge.Report, err error) {
			s.Read(func(m *merge.State) {
				rep, err = m.Report("k1.1")
				list = m.Reports(testSite)
			})
			return
		}
		if rep, list, err := read(); err != nil || rep.Status != event.ReportResolved || rep.Note != "修好了" || len(list) != 1 {
			t.Fatalf("archived report: %+v %v, list of %d", rep, err, len(list))
		}
		// Its number and its site, through the archive's index.
		s.Read(func(m *merge.State) {
			if id, ok := m.ReportByNumber(testSite, "B1-0007"); !ok || id != "k1.1" {
				t.Errorf("report by number: %q %v", id, ok)
			}
			if _, ok := m.ReportByNumber(testSite, "B1-0008"); ok {
				t.Error("found a number never filed")
			}
			if sites := m.Sites(); !slices.Equal(sites, []string{testSite}) {
				t.Errorf("sites %v, want the archived report's", sites)
			}
		})
		now := wall.advance(1000)
		ingestEvents(t, st, s, []event.Event{
			mustEvent(t, "k2", 1, now, &event.Rating{Resident: "R1", Target: "k1.1", Score: 5}),
			mustEvent(t, "k2", 2, now, &event.Vote{Report: "k1.1", Resident: "R2"}),
			mustEvent(t, "k2", 3, now, &event.ReportReopen{Report: "k1.1", Resident: "R1", Reason: "又漏了"}),
		})
		rep, list, err := read()
		if err != nil || rep.Status != event.ReportAccepted || rep.Rating.Count != 1 || rep.Votes != 1 || len(rep.History) != 3 || len(list) != 1 {
			t.Fatalf("after a rating, a vote and a reopen: %+v %v, list of %d", rep, err, len(list))
		}
	})
}

func mustEvent(t *testing.T, device string, seq uint64, ms int64, body event.Body) event.Event {
	t.Helper()
	ev, err := event.NewEvent(device, seq, hlc.New(ms, 0), body)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// An erasure rebuilds from the rewritten facts: the archive, which still
// names the resident, goes with the snapshot.
func TestErasureDropsTheArchive(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, st storetest.Store, _ func() storetest.Store) {
		wall := &fakeWall{}
		wall.ms.Store(1_000_000)
		s := openState(t, st)
		s.opts.Clock = hlc.NewClock(wall.now, 0)
		s.opts.Hold = time.Hour
		ingestEvents(t, st, s, []event.Event{edgeEvent(t, "k1", 1, &event.Report{Category: event.Categories[0], Title: "漏水", Building: "B1", Resident: "R77"})})
		if _, err := s.Record(&event.ReportPatch{Report: "k1.1", Status: event.ReportRejected, Who: "op"}); err != nil {
			t.Fatal(err)
		}
		wall.advance(int64(2 * time.Hour / time.Millisecond))
		if err := s.Snapshot(); err != nil {
			t.Fatal(err)
		}
		if countArchived(t, st) != 1 {
			t.Fatal("the rejected report was not archived")
		}
		if _, err := s.Erase(testSite, "R77"); err != nil {
			t.Fatal(err)
		}
		err := st.View(func(v store.View) error {
			return v.Scan([]byte(prefixArchive), nil, 0, func(k, val []byte, _ uint64) (bool, error) {
				if bytes.Contains(val, []byte("R77")) {
					t.Errorf("archived %s still names the erased resident", k)
				}
				return true, nil
			})
		})
		if err != nil {
			t.Fatal(err)
		}
		var rep merge.Report
		s.Read(func(m *merge.State) { rep, err = m.Report("k1.1") })
		if err != nil || rep.Resident == "R77" || rep.Status != event.ReportRejected {
			t.Fatalf("after the erasure: %+v %v", rep, err)
		}
	})
}
