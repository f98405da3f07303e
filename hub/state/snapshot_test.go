package state

import (
	"bytes"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"linli/hub/downlink"
	"linli/hub/store"
	"linli/shared/event"
	"linli/shared/hlc"
	"linli/shared/test/storetest"
)

// logBuf collects log lines, for checking which way the state loaded.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *logBuf) String() string              { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// encodeState opens the merged state over st and returns its encoding and
// what the load logged.
func encodeState(t *testing.T, st store.Backend, build string) ([]byte, string) {
	t.Helper()
	var logs logBuf
	log := slog.New(slog.NewTextHandler(&logs, nil))
	down, err := downlink.Open(st, discardPub{}, hlc.NewClock(nil, 0), nil, log)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(Options{Store: st, Downlink: down, Clock: hlc.NewClock(nil, 0), HubID: "hub",
		Kiosks: func(string) []string { return nil }, Logger: log, Build: build})
	if err != nil {
		t.Fatal(err)
	}
	var data []byte
	s.mu.RLock()
	data, err = s.merged.Encode()
	s.mu.RUnlock()
	if err != nil {
		t.Fatal(err)
	}
	return data, logs.String()
}

// randomCommit folds one commit of random edge events (from two kiosks,
// out of order within the commit's range) or records a hub decision.
func randomCommit(t *testing.T, r *rand.Rand, st store.Backend, s *State, next map[string]uint64, reports *[]string) {
	t.Helper()
	if r.IntN(5) == 0 {
		var body event.Body = &event.ActivitySet{ID: fmt.Sprintf("A%d", r.IntN(4)), Title: fmt.Sprintf("活动 %d", r.IntN(100)),
			Type: "activity", Site: testSite, Capacity: uint32(1 + r.IntN(20))}
		if len(*reports) > 0 && r.IntN(2) == 0 {
			body = &event.ReportPatch{Report: (*reports)[r.IntN(len(*reports))], Note: fmt.Sprintf("note %d", r.IntN(100)), Who: "op"}
		}
		if _, err := s.Record(body); err != nil {
			t.Fatal(err)
		}
		return
	}
	device := []string{"k1", "k2"}[r.IntN(2)]
	var evs []event.Event
	for range 1 + r.IntN(8) {
		next[device]++
		seq := next[device]
		var body event.Body
		switch r.IntN(4) {
		case 0:
			body = &event.Report{Category: event.Categories[r.IntN(len(event.Categories))], Title: fmt.Sprintf("t%d", r.IntN(50)),
				Building: "B1", Resident: fmt.Sprintf("R%d", r.IntN(30))}
			*reports = append(*reports, event.FormatID(device, seq))
		case 1:
			if len(*reports) > 0 {
				body = &event.Vote{Report: (*reports)[r.IntN(len(*reports))], Resident: fmt.Sprintf("R%d", r.IntN(30))}
				break
			}
			fallthrough
		default:
			body = &event.Checkin{Resident: fmt.Sprintf("R%d", r.IntN(30)), Activity: fmt.Sprintf("A%d", r.IntN(4)), Action: "in"}
		}
		ev, err := event.NewEvent(device, seq, hlc.Timestamp(1_000_000+r.Uint64N(1<<30)), body)
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	ingestEvents(t, st, s, evs)
}

// A start from the snapshot and the facts stored after it gives a merged
// state byte-identical to a rebuild from every fact, wherever the
// snapshot was taken in the history (property: random facts, snapshot at
// a random point, restart). A snapshot of another build, or one whose
// bytes are damaged, is not used: the state is rebuilt from every fact,
// and the log says so.
func TestSnapshotStartEqualsFullRebuild(t *testing.T) {
	for trial := range 12 {
		t.Run(fmt.Sprint(trial), func(t *testing.T) {
			storetest.ForEach(t, func(t *testing.T, st storetest.Store, reopen func() storetest.Store) {
				testSnapshotStartEqualsFullRebuild(t, trial, st, reopen)
			})
		})
	}
}

func testSnapshotStartEqualsFullRebuild(t *testing.T, trial int, st storetest.Store, reopen func() storetest.Store) {
	r := rand.New(rand.NewPCG(uint64(trial), 7))
	s := openState(t, st)
	s.opts.Build = "b1"
	commits, at := 10+r.IntN(60), -1
	at = r.IntN(commits + 1)
	next, reports := map[string]uint64{}, &[]string{}
	for i := range commits {
		if i == at {
			if err := s.Snapshot(); err != nil {
				t.Fatal(err)
			}
		}
		randomCommit(t, r, st, s, next, reports)
	}
	if at == commits {
		if err := s.Snapshot(); err != nil {
			t.Fatal(err)
		}
	}
	s.mu.RLock()
	live, err := s.merged.Encode()
	s.mu.RUnlock()
	if err != nil {
		t.Fatal(err)
	}
	st = reopen()
	fromSnap, logs := encodeState(t, st, "b1")
	if !strings.Contains(logs, "snapshot=true") {
		t.Fatalf("the start did not use the snapshot: %s", logs)
	}
	full, logs := encodeState(t, st, "b2") // another build: every fact
	if !strings.Contains(logs, "snapshot not used") || !strings.Contains(logs, "snapshot=false") {
		t.Fatalf("another build's snapshot was used: %s", logs)
	}
	if !bytes.Equal(fromSnap, full) || !bytes.Equal(full, live) {
		t.Fatalf("snapshot at commit %d of %d: state from the snapshot (%d bytes) differs from a full rebuild (%d) or the live state (%d)",
			at, commits, len(fromSnap), len(full), len(live))
	}

	// A damaged chunk: rebuilt from every fact, the same state.
	h, _, err := readSnapHead(st)
	if err != nil {
		t.Fatal(err)
	}
	wb := st.NewBatch()
	wb.Set(snapChunkKey(h.Gen, 0), []byte("not the state"))
	if err := wb.Commit(); err != nil {
		t.Fatal(err)
	}
	damaged, logs := encodeState(t, st, "b1")
	if !strings.Contains(logs, "checksum mismatch") || !bytes.Equal(damaged, full) {
		t.Fatalf("damaged snapshot: equal %v, log %s", bytes.Equal(damaged, full), logs)
	}
}

// An erasure drops the snapshot, which still names the resident: the
// next start rebuilds from the rewritten facts.
func TestErasureDropsTheSnapshot(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, st storetest.Store, _ func() storetest.Store) { testErasureDropsTheSnapshot(t, st) })
}

func testErasureDropsTheSnapshot(t *testing.T, st store.Backend) {
	s := openState(t, st)
	ingestEvents(t, st, s, []event.Event{edgeEvent(t, "k1", 1, &event.Report{Category: event.Categories[0], Title: "漏水", Building: "B1", Resident: "R77"})})
	if err := s.Snapshot(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Erase(testSite, "R77"); err != nil {
		t.Fatal(err)
	}
	data, logs := encodeState(t, st, "")
	if strings.Contains(logs, "snapshot=true") || bytes.Contains(data, []byte("R77")) {
		t.Fatalf("after the erasure the state loaded from the snapshot or names the resident: %s", logs)
	}
}

// A start from a snapshot reads the fact keys written after it, not every
// fact key of the store's history, and folds into the same state.
func TestSnapshotStartReadsOnlyLaterFacts(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, st storetest.Store, _ func() storetest.Store) {
		testSnapshotStartReadsOnlyLaterFacts(t, st)
	})
}

func testSnapshotStartReadsOnlyLaterFacts(t *testing.T, st store.Backend) {
	s := openState(t, st)
	const before, after = 300, 4
	seq := uint64(0)
	commit := func() {
		seq++
		ingestEvents(t, st, s, []event.Event{edgeEvent(t, "k1", seq,
			&event.Report{Category: event.Categories[0], Title: fmt.Sprint("r", seq), Building: "B1"})})
	}
	for range before {
		commit()
	}
	if err := s.Snapshot(); err != nil {
		t.Fatal(err)
	}
	for range after {
		commit()
	}
	want := views(s)

	s2 := openState(t, st)
	if s2.loadRead != after {
		t.Errorf("the start read %d fact keys, want the %d written after the snapshot (of %d)", s2.loadRead, after, before+after)
	}
	if got := views(s2); len(got.Reports) != before+after || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("started with %d reports, want the %d folded before the restart", len(got.Reports), before+after)
	}
}
