package merge_test

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"linli/shared/event"
	"linli/shared/merge"
)

// mergeFacts is a small triage story: C filed by R1 with a "me too" from
// R2; D (a duplicate) filed by R3 with "me too"s from R2 and R4; the
// operator merges D into C, then resolves C.
func mergeFacts(t tb) (facts []merge.Fact, c, d string) {
	c, d = "k1.1", "k2.1"
	facts = []merge.Fact{
		fact(t, "k1", 1, 0, &event.Report{Category: "elevator", Title: "电梯异响", Building: "B2", Resident: "R1"}),
		fact(t, "k1", 2, 10, &event.Vote{Report: c, Resident: "R2"}),
		fact(t, "k2", 1, 20, &event.Report{Category: "elevator", Title: "电梯有怪声", Building: "B2", Resident: "R3"}),
		fact(t, "k2", 2, 30, &event.Vote{Report: d, Resident: "R2"}),
		fact(t, "k2", 3, 40, &event.Vote{Report: d, Resident: "R4"}),
		fact(t, "hub", 1, 50, &event.ReportMerge{Report: d, Into: c, Who: "op1"}),
		fact(t, "hub", 2, 60, &event.ReportPatch{Report: c, Status: event.ReportResolved, Note: "已修好", Who: "op1"}),
	}
	return facts, c, d
}

func report(t tb, s *merge.State, id string) merge.Report {
	t.Helper()
	r, err := s.Report(id)
	if err != nil {
		t.Fatalf("report %s: %v", id, err)
	}
	return r
}

func TestMergeCarriesVotesAndTheDuplicateFollows(t *testing.T) {
	facts, c, d := mergeFacts(t)
	s := build(t, facts[:5]...)
	if got := report(t, s, c).Votes; got != 1 {
		t.Fatalf("C before the merge: %d votes, want 1", got)
	}
	applyAll(t, s, facts[5:]...)
	rc, rd := report(t, s, c), report(t, s, d)
	// R2 (on both), R3 (filed D), R4: three residents besides C's reporter.
	if rc.Votes != 3 || !slices.Equal(rc.Duplicates, []string{d}) || rc.MergedInto != "" {
		t.Fatalf("C after the merge: votes %d duplicates %v merged_into %q; want 3, [%s], \"\"", rc.Votes, rc.Duplicates, rc.MergedInto, d)
	}
	if rd.MergedInto != c || rd.Status != event.ReportResolved || rd.Note != "已修好" || rd.Votes != 3 {
		t.Fatalf("D after the merge: %+v; want merged into %s, resolved with C's note and votes", rd, c)
	}
	v, err := s.ReportView(d)
	if err != nil || v.MergedInto != c || v.Status != event.ReportResolved {
		t.Fatalf("D's kiosk view %+v (%v): want merged into %s and resolved", v, err, c)
	}
	if !slices.ContainsFunc(rc.History, func(h merge.HistoryEntry) bool {
		return h.Event == merge.HistoryMerged && h.Note == d && h.Who == "op1"
	}) {
		t.Fatalf("C's history %+v lacks the merge of %s", rc.History, d)
	}
	if !slices.ContainsFunc(rd.History, func(h merge.HistoryEntry) bool { return h.Event == merge.HistoryMergedInto && h.Note == c }) {
		t.Fatalf("D's history %+v lacks its merge into %s", rd.History, c)
	}
	if err := s.CheckPatch(&event.ReportPatch{Report: d, Status: event.ReportRejected, Who: "op1"}); !errors.Is(err, merge.ErrBadTransition) {
		t.Fatalf("patching a merged duplicate: %v, want ErrBadTransition", err)
	}
}

// Every order of the facts gives the same bytes and the same views.
func TestMergeIsOrderIndependent(t *testing.T) {
	facts, c, d := mergeFacts(t)
	// A cycle too: E and F merged into each other by two operators.
	facts = append(facts,
		fact(t, "k3", 1, 70, &event.Report{Category: "noise", Title: "夜间噪音", Building: "B5", Resident: "R7"}),
		fact(t, "k3", 2, 80, &event.Report{Category: "noise", Title: "楼上噪音", Building: "B5"}),
		fact(t, "hub", 3, 90, &event.ReportMerge{Report: "k3.1", Into: "k3.2", Who: "op1"}),
		fact(t, "hub", 4, 91, &event.ReportMerge{Report: "k3.2", Into: "k3.1", Who: "op2"}),
		fact(t, "hub", 5, 95, &event.ReportFile{Site: site, ClientID: "c-1", Who: "op1",
			Report: event.Report{Category: "sanitation", Title: "垃圾满了", Building: "B1"}}),
		fact(t, "hub", 6, 96, &event.ReportFile{Site: site, ClientID: "c-1", Who: "op1",
			Report: event.Report{Category: "sanitation", Title: "垃圾满了（重发）", Building: "B1"}}),
	)
	views := func(s *merge.State) string {
		b, err := json.Marshal(s.Reports(""))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	ref := build(t, facts...)
	wantBytes, wantViews := encode(t, ref), views(ref)
	rng := rand.New(rand.NewPCG(7, 7))
	for i := range 200 {
		shuffled := slices.Clone(facts)
		rng.Shuffle(len(shuffled), func(a, b int) { shuffled[a], shuffled[b] = shuffled[b], shuffled[a] })
		s := merge.New()
		if i%2 == 0 {
			if _, err := s.ApplyBatch(shuffled); err != nil {
				t.Fatal(err)
			}
		} else {
			applyAll(t, s, shuffled...)
			applyAll(t, s, shuffled[:3]...) // repeats change nothing
		}
		if got := encode(t, s); string(got) != string(wantBytes) {
			t.Fatalf("order %d: encoded state differs", i)
		}
		if got := views(s); got != wantViews {
			t.Fatalf("order %d: views differ:\n got %s\nwant %s", i, got, wantViews)
		}
	}
	// The cycle resolves to the smaller id, whatever came first.
	if e, f := report(t, ref, "k3.1"), report(t, ref, "k3.2"); e.MergedInto != "" || f.MergedInto != "k3.1" || e.Votes != 1 {
		t.Fatalf("cycle: k3.1 merged_into %q votes %d, k3.2 merged_into %q; want k3.1 canonical with 1 vote (the anonymous duplicate)", e.MergedInto, e.Votes, f.MergedInto)
	}
	_ = c
	_ = d
}

func TestMergeRefsNameTheWholeGroup(t *testing.T) {
	facts, c, d := mergeFacts(t)
	s := build(t, facts[:6]...)
	refs, err := s.Apply(fact(t, "k2", 9, 100, &event.Vote{Report: d, Resident: "R9"}))
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{}
	for _, r := range refs {
		ids = append(ids, r.ID)
	}
	slices.Sort(ids)
	if !slices.Equal(ids, []string{c, d}) {
		t.Fatalf("a vote on the duplicate changed %v; want both %s and %s (C's count moved)", ids, c, d)
	}
	if got := report(t, s, c).Votes; got != 4 {
		t.Fatalf("C's votes after R9 on D: %d, want 4", got)
	}
}

func TestCheckMerge(t *testing.T) {
	facts, c, d := mergeFacts(t)
	s := build(t, facts[:6]...)
	other := merge.Fact{Site: "S2", Event: fact(t, "k9", 1, 5, &event.Report{Category: "other", Title: "x", Building: "B1"}).Event}
	applyAll(t, s, other)
	for _, tc := range []struct {
		name string
		m    event.ReportMerge
		want error
	}{
		{"unknown duplicate", event.ReportMerge{Report: "k5.1", Into: c}, merge.ErrNotFound},
		{"unknown target", event.ReportMerge{Report: c, Into: "k5.1"}, merge.ErrNotFound},
		{"other site", event.ReportMerge{Report: "k9.1", Into: c}, merge.ErrBadTransition},
		{"into its own duplicate", event.ReportMerge{Report: c, Into: d}, merge.ErrBadTransition},
		{"again into the same", event.ReportMerge{Report: d, Into: c}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.CheckMerge(&tc.m); !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("CheckMerge(%+v) = %v, want %v", tc.m, err, tc.want)
			}
		})
	}
}

func TestReportFiledAtTheHub(t *testing.T) {
	file := func(seq uint64, ms int64, client, title string) merge.Fact {
		return fact(t, "hub", seq, ms, &event.ReportFile{Site: site, ClientID: client, Who: "op1",
			Report: event.Report{Category: "facilities", Title: title, Building: "B4"}})
	}
	first, retry, plain := file(1, 0, "abc", "路灯不亮"), file(2, 10, "abc", "路灯不亮（重试）"), file(3, 20, "", "井盖松动")
	for _, order := range [][]merge.Fact{{first, retry, plain}, {retry, plain, first}} {
		s := build(t, order...)
		reps := s.Reports(site)
		if len(reps) != 2 {
			t.Fatalf("%d reports, want 2 (a retry files nothing new)", len(reps))
		}
		r := report(t, s, event.ClientReportID(site, "abc"))
		if r.Title != "路灯不亮" || r.Site != site {
			t.Fatalf("client report %+v: want the earliest filing", r)
		}
		if _, err := s.Report("hub.3"); err != nil {
			t.Fatalf("a filing without client id is known by its event id: %v", err)
		}
	}
	if a, b := event.ClientReportID("s1", "x"), event.ClientReportID("s2", "x"); a == b {
		t.Fatalf("client ids of two sites collide: %s", a)
	}
}

func TestReportOpsValidate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		body  event.Body
		field string
	}{
		{"merge into itself", &event.ReportMerge{Report: "k1.1", Into: "k1.1", Who: "op"}, "into"},
		{"merge without who", &event.ReportMerge{Report: "k1.1", Into: "k1.2"}, "who"},
		{"merge bad ref", &event.ReportMerge{Report: "k 1", Into: "k1.2", Who: "op"}, "report"},
		{"file without site", &event.ReportFile{Who: "op", Report: event.Report{Category: "other", Title: "t", Building: "B1"}}, "site"},
		{"file bad category", &event.ReportFile{Site: "s1", Who: "op", Report: event.Report{Category: "x", Title: "t", Building: "B1"}}, "category"},
		{"file long client id", &event.ReportFile{Site: "s1", Who: "op", ClientID: string(make([]byte, 129)),
			Report: event.Report{Category: "other", Title: "t", Building: "B1"}}, "client_id"},
		{"good merge", &event.ReportMerge{Report: "k1.1", Into: "k1.2", Who: "op"}, ""},
		{"good file", &event.ReportFile{Site: "s1", Who: "op", ClientID: "311-9", Report: event.Report{Category: "other", Title: "t", Building: "B1"}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.body.Validate()
			var fe *event.FieldError
			switch {
			case tc.field == "" && err != nil:
				t.Fatalf("Validate: %v, want nil", err)
			case tc.field != "" && (!errors.As(err, &fe) || fe.Field != tc.field):
				t.Fatalf("Validate: %v, want a FieldError on %s", err, tc.field)
			}
		})
	}
}

// An unmerge is a later merge that points nowhere: the report stands alone
// again whatever order the facts arrive in, and both reports' histories
// record the merge and its undo.
func TestUnmergeIsLatestWriterAndInHistory(t *testing.T) {
	rep := func(dev string, seq uint64, ms int64) merge.Fact {
		return fact(t, dev, seq, ms, &event.Report{Category: "noise", Title: "t", Building: "B1", Resident: "R" + dev})
	}
	a, b := rep("k1", 1, 1), rep("k2", 1, 2)
	m := fact(t, "hub", 1, 10, &event.ReportMerge{Report: "k2.1", Into: "k1.1", Who: "op"})
	undo := fact(t, "hub", 2, 20, &event.ReportMerge{Report: "k2.1", Who: "op2"})
	for _, order := range [][]merge.Fact{{a, b, m, undo}, {undo, m, b, a}, {b, undo, a, m, undo}} {
		s := build(t, order...)
		dup, err := s.Report("k2.1")
		if err != nil {
			t.Fatal(err)
		}
		if dup.MergedInto != "" || dup.Votes != 0 {
			t.Fatalf("after the undo: merged_into %q votes %d, want alone", dup.MergedInto, dup.Votes)
		}
		var events []string
		for _, h := range dup.History {
			events = append(events, h.Event+":"+h.Note+":"+h.Who)
		}
		if got, want := strings.Join(events, " "), "created::Rk2 merged_into:k1.1:op unmerged:k1.1:op2"; got != want {
			t.Fatalf("duplicate history %q, want %q", got, want)
		}
		c, _ := s.Report("k1.1")
		if len(c.Duplicates) != 0 || c.Votes != 0 {
			t.Fatalf("canonical after the undo: duplicates %v votes %d", c.Duplicates, c.Votes)
		}
		if n := len(c.History); n != 3 || c.History[2].Event != merge.HistoryDuplicateUnmerged {
			t.Fatalf("canonical history %+v, want created, merged, unmerged", c.History)
		}
		if err := s.CheckMerge(&event.ReportMerge{Report: "k2.1", Who: "op"}); !errors.Is(err, merge.ErrBadTransition) {
			t.Fatalf("unmerging a report that is not merged: %v, want ErrBadTransition", err)
		}
	}
}

// An internal note stays at the hub: the kiosk's view shows the latest
// public reply only, the hub's report both.
func TestInternalNoteStaysAtTheHub(t *testing.T) {
	s := build(t,
		fact(t, "k1", 1, 1, &event.Report{Category: "noise", Title: "t", Building: "B1"}),
		fact(t, "hub", 1, 2, &event.ReportPatch{Report: "k1.1", Note: "we are on it", Who: "op"}),
		fact(t, "hub", 2, 3, &event.ReportPatch{Report: "k1.1", Note: "tenant is difficult", Internal: true, Who: "op"}),
	)
	v, _ := s.ReportView("k1.1")
	if v.Note != "we are on it" {
		t.Fatalf("kiosk view note %q, want the public reply", v.Note)
	}
	for _, st := range v.Steps {
		if st.Reply == "tenant is difficult" {
			t.Fatalf("kiosk view's timeline carries the internal note: %+v", v.Steps)
		}
	}
	r, _ := s.Report("k1.1")
	if r.Note != "we are on it" || r.InternalNote != "tenant is difficult" || !r.History[2].Internal {
		t.Fatalf("hub report note %q internal %q history %+v", r.Note, r.InternalNote, r.History)
	}
}
