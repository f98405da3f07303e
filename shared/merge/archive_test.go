package merge_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"testing"

	"pgregory.net/rapid"

	"linli/shared/event"
	"linli/shared/merge"
)

// memArchive is an Archive in a map, as the hub's store holds it.
type memArchive struct {
	m       map[string][]byte // kind/id → data
	sites   map[string]bool
	numbers map[string][]string // site/number → ids
	fail    bool
}

func newMemArchive() *memArchive {
	return &memArchive{m: map[string][]byte{}, sites: map[string]bool{}, numbers: map[string][]string{}}
}

func (a *memArchive) Sites() ([]string, error) { return slices.Sorted(maps.Keys(a.sites)), nil }

func (a *memArchive) Numbered(site, number string) ([]string, error) {
	return a.numbers[site+"/"+number], nil
}

func (a *memArchive) Get(kind, id string) ([]byte, error) {
	if a.fail {
		return nil, errors.New("disk on fire")
	}
	return a.m[kind+"/"+id], nil
}

func (a *memArchive) Scan(kind string, f func(id string, data []byte) bool) error {
	for _, k := range slices.Sorted(maps.Keys(a.m)) {
		if id, ok := bytes.CutPrefix([]byte(k), []byte(kind+"/")); ok && !f(string(id), a.m[k]) {
			break
		}
	}
	return nil
}

func (a *memArchive) evict(t tb, s *merge.State, ms int64) int {
	t.Helper()
	out, err := s.Evict(at(ms))
	if err != nil {
		t.Fatalf("evict: %v", err)
	}
	for _, e := range out {
		a.m[e.Kind+"/"+e.ID] = e.Data
		if e.Site != "" {
			a.sites[e.Site] = true
		}
		if k := e.Site + "/" + e.Number; e.Number != "" && !slices.Contains(a.numbers[k], e.ID) {
			a.numbers[k] = append(a.numbers[k], e.ID)
		}
	}
	return len(out)
}

// readAll is what the hub's readers see of a state, as JSON.
func readAll(t tb, s *merge.State, facts []merge.Fact) string {
	t.Helper()
	q := map[string]any{
		"reports": s.Reports(""), "activities": s.Activities(site), "ratings": s.RatingPoints(""), "sites": s.Sites(),
		"open": s.OpenReportsWhere(site, func(merge.ReportHead) bool { return true }),
	}
	for _, f := range facts {
		id := f.Event.ID()
		if r, err := s.Report(id); err == nil {
			v, _ := s.ReportView(id)
			q["report "+id] = []any{r, v, s.Ratings(id), s.CheckPatch(&event.ReportPatch{Report: id, Status: event.ReportResolved}) == nil}
		}
		for _, number := range []string{"B1-0001", "B2-0001"} {
			if n, ok := s.ReportByNumber(site, number); ok {
				q["number "+number] = n
			}
		}
	}
	for _, id := range []string{"A1", "A2"} {
		a, err := s.Activity(id)
		att, _ := s.Attendance(id)
		set, _ := s.ActivitySet(id)
		q["activity "+id] = []any{a, err == nil, att, set, s.Ratings(id), s.Rating(id), s.Outcome(id, "R1")}
	}
	data, err := json.Marshal(q)
	if err != nil {
		t.Fatalf("encode queries: %v", err)
	}
	return string(data)
}

// TestEvictionIsInvisible is the property behind the archive: any history,
// evicting at random points with random hold times and paging entities
// back in as later facts touch them, ends in the state a never-evicted
// fold reaches, byte for byte, and every query answers the same.
func TestEvictionIsInvisible(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		facts := closeSome(t, genFacts(t))
		never := merge.New()
		applyAll(t, never, facts...)

		arch := newMemArchive()
		s := merge.New()
		s.SetArchive(arch)
		evicted := 0
		for i := 0; i < len(facts); {
			n := rapid.IntRange(1, 6).Draw(t, "batch")
			if _, err := s.ApplyBatch(facts[i:min(i+n, len(facts))]); err != nil && errors.Is(err, merge.ErrArchive) {
				t.Fatalf("apply: %v", err)
			}
			i += n
			if rapid.Bool().Draw(t, "evict") {
				evicted += arch.evict(t, s, rapid.Int64Range(0, 60).Draw(t, "cutoff ms"))
			}
		}
		want, err := never.Encode()
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.EncodeAll()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("state after %d evictions differs from the never-evicted one", evicted)
		}
		if g, w := readAll(t, s, facts), readAll(t, never, facts); g != w {
			t.Fatalf("queries differ after %d evictions:\n got %s\nwant %s", evicted, g, w)
		}
	})
}

// closeSome adds to facts, at random places, resolutions and rejections
// of its reports and definitions of its activities that end early, so
// that there is much to evict.
func closeSome(t *rapid.T, facts []merge.Fact) []merge.Fact {
	var seq uint64
	add := func(body event.Body) {
		seq++
		ev, err := event.NewEvent("hub-c", seq, at(rapid.Int64Range(0, 40).Draw(t, "close ms")), body)
		if err != nil {
			t.Fatalf("new event: %v", err)
		}
		i := rapid.IntRange(0, len(facts)).Draw(t, "close at")
		facts = slices.Insert(facts, i, merge.Fact{Site: site, Event: ev})
	}
	for _, f := range slices.Clone(facts) {
		if f.Event.Kind == event.KindReport && rapid.Bool().Draw(t, "close") {
			add(&event.ReportPatch{Report: f.Event.ID(), Who: "op",
				Status: rapid.SampledFrom([]string{event.ReportResolved, event.ReportRejected}).Draw(t, "closed")})
		}
	}
	for _, id := range []string{"A1", "A2"} {
		if rapid.Bool().Draw(t, "end "+id) {
			zero := uint32(0)
			add(&event.ActivitySet{ID: id, Title: "ends", Type: "activity", Site: site, Capacity: 3,
				Start: base + 5, End: base + rapid.Int64Range(6, 30).Draw(t, "end"), CheckinOpens: &zero,
				Cancelled: rapid.IntRange(0, 4).Draw(t, "cancel") == 0})
		}
	}
	return facts
}

// TestEvictKeepsWhatIsWarm: only closed reports and ended activities whose
// last fact is older than the cut-off leave memory, and the snapshot
// (Encode) no longer holds them.
func TestEvictKeepsWhatIsWarm(t *testing.T) {
	s := merge.New()
	arch := newMemArchive()
	s.SetArchive(arch)
	end := base + 30
	applyAll(t, s,
		fact(t, "k1", 1, 0, &event.Report{Category: "noise", Title: "closed", Building: "B1"}),
		fact(t, "k1", 2, 1, &event.Report{Category: "noise", Title: "open", Building: "B1"}),
		fact(t, "k1", 3, 2, &event.Report{Category: "noise", Title: "closed late", Building: "B1"}),
		fact(t, "hub", 1, 5, &event.ReportPatch{Report: "k1.1", Status: event.ReportResolved, Who: "op"}),
		fact(t, "hub", 2, 50, &event.ReportPatch{Report: "k1.3", Status: event.ReportRejected, Who: "op"}),
		fact(t, "hub", 3, 6, &event.ActivitySet{ID: "A1", Title: "ended", Type: "activity", Site: site, Start: base + 20, End: end}),
		fact(t, "hub", 4, 6, &event.ActivitySet{ID: "A2", Title: "open-ended", Type: "activity", Site: site, Start: base + 20}),
		fact(t, "k1", 4, 10, &event.Rating{Resident: "R1", Target: "k1.1", Score: 4}),
	)
	before, _ := s.Encode()
	if n := arch.evict(t, s, 40); n != 2 {
		t.Fatalf("evicted %d entities, want 2 (k1.1 and A1): %v", n, slices.Collect(maps.Keys(arch.m)))
	}
	for _, k := range []string{"report/k1.1", "activity/A1"} {
		if arch.m[k] == nil {
			t.Errorf("archive lacks %s", k)
		}
	}
	after, _ := s.Encode()
	if len(after) >= len(before) {
		t.Errorf("snapshot of %d bytes after eviction, %d before", len(after), len(before))
	}
	// Read from the archive, the rating with it.
	if r, err := s.Report("k1.1"); err != nil || r.Status != event.ReportResolved || r.Rating.Count != 1 {
		t.Errorf("archived report: %+v, %v", r, err)
	}
	// A reopen pages it back in.
	applyAll(t, s, fact(t, "k2", 1, 60, &event.ReportReopen{Report: "k1.1", Resident: "R1", Reason: "still broken"}))
	if r, _ := s.Report("k1.1"); r.Status != event.ReportAccepted {
		t.Errorf("reopened archived report is %s, want accepted", r.Status)
	}
	if n := arch.evict(t, s, 40); n != 0 {
		t.Errorf("evicted %d, want none: the reopened report is warm", n)
	}
}

// TestArchiveReadFailureFailsTheFold: a fact whose entity cannot be read
// back must not fold into a fresh one and commit as if it were whole.
func TestArchiveReadFailureFailsTheFold(t *testing.T) {
	s := merge.New()
	arch := newMemArchive()
	s.SetArchive(arch)
	applyAll(t, s,
		fact(t, "k1", 1, 0, &event.Report{Category: "noise", Title: "closed", Building: "B1"}),
		fact(t, "hub", 1, 5, &event.ReportPatch{Report: "k1.1", Status: event.ReportResolved, Who: "op"}),
	)
	arch.evict(t, s, 40)
	arch.fail = true
	_, err := s.ApplyBatch([]merge.Fact{fact(t, "k2", 1, 60, &event.Vote{Report: "k1.1", Resident: "R7"})})
	if !errors.Is(err, merge.ErrArchive) {
		t.Fatalf("apply with an unreadable archive: %v, want ErrArchive", err)
	}
}
