package merge_test

import (
	"slices"
	"testing"

	"linli/shared/event"
	"linli/shared/merge"
)

// TestReopen: a resident's "still not fixed" moves a resolved report back
// to accepted with a history step, whatever order the facts arrive in; a
// reopen before the resolution (by key) or of an open report changes
// nothing, and the office can resolve the report again.
func TestReopen(t *testing.T) {
	const id = "k1.1"
	filed := fact(t, "k1", 1, 0, &event.Report{Category: "elevator", Title: "电梯异响", Building: "B2", Resident: "R1", Number: "B2-0001"})
	resolve := func(seq uint64, ms int64) merge.Fact {
		return fact(t, "hub", seq, ms, &event.ReportPatch{Report: id, Status: event.ReportResolved, Note: "已修好", Who: "op1"})
	}
	reopen := func(seq uint64, ms int64) merge.Fact {
		return fact(t, "k1", seq, ms, &event.ReportReopen{Report: id, Resident: "R1", Reason: "还是响"})
	}
	tests := []struct {
		name   string
		facts  []merge.Fact
		status string
		steps  []string // public steps as event:status
	}{
		{"reopened after resolution", []merge.Fact{filed, resolve(1, 10), reopen(2, 20)}, event.ReportAccepted,
			[]string{"created:submitted", "patched:resolved", "reopened:accepted"}},
		{"reopen before resolution ignored", []merge.Fact{filed, reopen(2, 5), resolve(1, 10)}, event.ReportResolved,
			[]string{"created:submitted", "patched:resolved"}},
		{"reopen of an open report ignored", []merge.Fact{filed, reopen(2, 20)}, event.ReportSubmitted,
			[]string{"created:submitted"}},
		{"resolved again after reopen", []merge.Fact{filed, resolve(1, 10), reopen(2, 20), resolve(2, 30)}, event.ReportResolved,
			[]string{"created:submitted", "patched:resolved", "reopened:accepted", "patched:resolved"}},
		{"two reopens of one resolution count once", []merge.Fact{filed, resolve(1, 10), reopen(2, 20), reopen(3, 25)}, event.ReportAccepted,
			[]string{"created:submitted", "patched:resolved", "reopened:accepted"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var first []byte
			for i := range 6 { // in order, reversed, and rotations
				facts := slices.Clone(tc.facts)
				if i%2 == 1 {
					slices.Reverse(facts)
				}
				facts = append(facts[i%len(facts):], facts[:i%len(facts)]...)
				s := merge.New()
				applyAll(t, s, facts...)
				applyAll(t, s, facts...) // idempotent
				r := report(t, s, id)
				if r.Status != tc.status {
					t.Fatalf("order %d: status %q, want %q", i, r.Status, tc.status)
				}
				v, err := s.ReportView(id)
				if err != nil {
					t.Fatal(err)
				}
				var got []string
				for _, st := range v.Steps {
					got = append(got, st.Event+":"+st.Status)
				}
				if !slices.Equal(got, tc.steps) {
					t.Fatalf("order %d: steps %v, want %v", i, got, tc.steps)
				}
				if v.Number != "B2-0001" {
					t.Fatalf("number %q, want B2-0001", v.Number)
				}
				enc, err := s.Encode()
				if err != nil {
					t.Fatal(err)
				}
				if first == nil {
					first = enc
				} else if string(enc) != string(first) {
					t.Fatalf("order %d: encoded state differs", i)
				}
			}
		})
	}
}

// TestPublicStepsHideNames: the kiosk's timeline carries the office's
// replies and statuses, never who filed, reopened or handled a report,
// nor a resident's reason; a merge names the other report by its number.
func TestPublicStepsHideNames(t *testing.T) {
	facts, c, d := mergeFacts(t)
	facts[0] = fact(t, "k1", 1, 0, &event.Report{Category: "elevator", Title: "电梯异响", Building: "B2", Resident: "R1", Number: "B2-0001"})
	facts = append(facts, fact(t, "k2", 4, 70, &event.ReportReopen{Report: c, Resident: "R3", Reason: "secret reason"}))
	s := merge.New()
	applyAll(t, s, facts...)
	v, err := s.ReportView(d)
	if err != nil {
		t.Fatal(err)
	}
	if v.MergedInto != c || v.MergedIntoNumber != "B2-0001" {
		t.Fatalf("merged into %q (number %q), want %s (B2-0001)", v.MergedInto, v.MergedIntoNumber, c)
	}
	last := v.Steps[len(v.Steps)-1]
	if last.Event != merge.HistoryMergedInto || last.Reply != "B2-0001" {
		t.Fatalf("last step %+v, want merged_into naming B2-0001", last)
	}
	cv, err := s.ReportView(c)
	if err != nil {
		t.Fatal(err)
	}
	if cv.Status != event.ReportAccepted {
		t.Fatalf("canonical status %q after reopen, want accepted", cv.Status)
	}
	for _, st := range append(v.Steps, cv.Steps...) {
		if st.Reply == "secret reason" || st.Reply == "R1" || st.Reply == "R3" || st.Reply == "op1" {
			t.Fatalf("public step %+v carries a name or a resident's reason", st)
		}
	}
}

// A number names a report within its site; two kiosks that share a code
// by mistake still get one answer, the same in any order.
func TestReportByNumber(t *testing.T) {
	facts := []merge.Fact{
		fact(t, "k2", 1, 0, &event.Report{Category: "noise", Title: "a", Building: "B1", Number: "B1-0001"}),
		fact(t, "k1", 1, 5, &event.Report{Category: "noise", Title: "b", Building: "B1", Number: "B1-0001"}),
	}
	for _, order := range [][]merge.Fact{facts, {facts[1], facts[0]}} {
		s := merge.New()
		applyAll(t, s, order...)
		for _, tc := range []struct {
			site, number, want string
		}{
			{site, "B1-0001", "k1.1"},
			{site, "k2.1", "k2.1"},
			{site, "B1-0002", ""},
			{"other", "B1-0001", ""},
		} {
			if got, ok := s.ReportByNumber(tc.site, tc.number); got != tc.want || ok != (tc.want != "") {
				t.Errorf("ReportByNumber(%s, %s) = %q, %v; want %q", tc.site, tc.number, got, ok, tc.want)
			}
		}
	}
}
