package merge

import (
	"cmp"
	"fmt"
	"slices"

	"linli/shared/event"
	"linli/shared/hlc"
)

// Merging duplicate reports. A merge fact is kept on the duplicate; the
// latest one by key decides where it points (last writer wins), so merges
// commute like every other fact. A report that points nowhere is the
// canonical report of its group: every report whose chain of merges ends
// there. Members of a group show the canonical report's status and note,
// and the group's votes are the union of its members' voters and the
// residents who filed the duplicates. All of that is derived when read,
// from the facts alone, so it cannot depend on the order facts arrived.

// History event of a merge.
const (
	HistoryMerged     = "merged"      // on the canonical report: a duplicate was merged in
	HistoryMergedInto = "merged_into" // on the duplicate: it now follows another report
	HistoryUnmerged   = "unmerged"    // on the former duplicate: it stands alone again
	// HistoryDuplicateUnmerged is on the report a duplicate left.
	HistoryDuplicateUnmerged = "duplicate_unmerged"
)

// mergeFact is one operator's merge of this report into another.
type mergeFact struct {
	Key   key               `cbor:"1,keyasint"`
	Merge event.ReportMerge `cbor:"2,keyasint"`
}

func compareMerge(a, b mergeFact) int { return a.Key.compare(b.Key) }

// mergeIndex is the derived shape of the merge graph; nil until needed and
// dropped whenever a merge fact arrives. It is never encoded.
type mergeIndex struct {
	parent   map[string]string   // duplicate → the report its latest merge names
	children map[string][]string // report → duplicates pointing at it, sorted
	// steps is every merge and unmerge that concerns a report, for its
	// history: its own, and those of reports merged into it or out of it.
	steps map[string][]HistoryEntry
}

func (s *State) index() *mergeIndex {
	if s.merges != nil {
		return s.merges
	}
	ix := &mergeIndex{parent: map[string]string{}, children: map[string][]string{}, steps: map[string][]HistoryEntry{}}
	for _, id := range sortedKeys(s.reports) {
		r := s.reports[id]
		if len(r.Merges) == 0 {
			continue
		}
		prev := ""
		for _, f := range r.Merges {
			h := HistoryEntry{HLC: f.Key.HLC, Device: f.Key.Device, Seq: f.Key.Seq, Who: f.Merge.Who}
			switch into := f.Merge.Into; {
			case into != "":
				ix.addStep(id, h, HistoryMergedInto, into)
				ix.addStep(into, h, HistoryMerged, id)
			case prev != "":
				ix.addStep(id, h, HistoryUnmerged, prev)
				ix.addStep(prev, h, HistoryDuplicateUnmerged, id)
			}
			prev = f.Merge.Into
		}
		into := r.Merges[len(r.Merges)-1].Merge.Into
		if into == "" {
			continue // unmerged: the latest merge points nowhere
		}
		ix.parent[id] = into
		ix.children[into] = append(ix.children[into], id)
	}
	s.merges = ix
	return ix
}

// addStep records a merge step in id's history; other names the report
// on the other end.
func (ix *mergeIndex) addStep(id string, h HistoryEntry, what, other string) {
	h.Event, h.Note = what, other
	ix.steps[id] = append(ix.steps[id], h)
}

// canonical follows id's merges to the report of its group. In a cycle
// (two operators merging two reports into each other at once) the
// smallest id of the cycle is canonical, whatever order the merges came in.
func (s *State) canonical(id string) string {
	ix := s.index()
	if len(ix.parent) == 0 {
		return id
	}
	seen := []string{id}
	cur := id
	for {
		next, ok := ix.parent[cur]
		if !ok {
			return cur
		}
		if i := slices.Index(seen, next); i >= 0 {
			return slices.Min(seen[i:])
		}
		seen = append(seen, next)
		cur = next
	}
}

// group lists the reports whose canonical report is root, root first.
func (s *State) group(root string) []string {
	ix := s.index()
	out := []string{root}
	if len(ix.children) == 0 {
		return out
	}
	for i := 0; i < len(out); i++ {
		for _, c := range ix.children[out[i]] {
			if c != root && !slices.Contains(out, c) && s.canonical(c) == root {
				out = append(out, c)
			}
		}
	}
	return out
}

func (s *State) applyReportMerge(k key, b *event.ReportMerge) []Ref {
	r := s.report(b.Report)
	if b.Into != "" {
		s.pageIn(RefReport, b.Into) // it joins a group, whose views follow each other
	}
	// Every report of the old group changes view, and so does every one
	// of the new group.
	before := s.groupRefs([]Ref{{Kind: RefReport, ID: b.Report}})
	if !insertSorted(&r.Merges, mergeFact{Key: k, Merge: *b}, compareMerge) {
		return nil
	}
	s.merges = nil
	s.touchReport(r)
	refs := []Ref{{Kind: RefReport, ID: b.Report}}
	if b.Into != "" {
		refs = append(refs, Ref{Kind: RefReport, ID: b.Into})
	}
	after := s.groupRefs(refs)
	return dedupeRefs(append(before, after...))
}

func (s *State) applyReportFile(k key, b *event.ReportFile) []Ref {
	id := k.id()
	if b.ClientID != "" {
		id = event.ClientReportID(b.Site, b.ClientID)
	}
	r := s.report(id)
	if r.Filed != nil && r.Filed.Key.compare(k) <= 0 {
		return nil // the earliest filing of a client id is the report
	}
	r.Site = b.Site
	r.Filed = &filedReport{Key: k, Body: b.Report}
	s.touchReport(r)
	return s.groupRefs(r.ref())
}

// groupRefs adds to report refs every other report of their groups, whose
// views follow them. Without merges it returns refs as they are.
func (s *State) groupRefs(refs []Ref) []Ref {
	if len(s.index().parent) == 0 {
		return refs
	}
	out := slices.Clone(refs)
	for _, ref := range refs {
		if ref.Kind != RefReport {
			continue
		}
		for _, id := range s.group(s.canonical(ref.ID)) {
			if id != ref.ID {
				out = append(out, Ref{Kind: RefReport, Site: s.reportSite(id), ID: id})
			}
		}
	}
	return dedupeRefs(out)
}

func (s *State) reportSite(id string) string {
	if r := s.reports[id]; r != nil {
		return r.Site
	}
	return ""
}

func dedupeRefs(refs []Ref) []Ref {
	out := refs[:0]
	seen := map[Ref]bool{}
	for _, r := range refs {
		k := Ref{Kind: r.Kind, ID: r.ID}
		if !seen[k] {
			seen[k] = true
			out = append(out, r)
		}
	}
	return out
}

// groupView is what a report shows of its group.
type groupView struct {
	canonical string
	status    string
	note      string
	votes     uint32
	updated   hlc.Timestamp
	members   []string
}

// viewOf derives the group values a report shows; ok is false for a
// report in no group, which shows its own.
func (s *State) viewOf(id string) (groupView, bool) {
	ix := s.index()
	if len(ix.parent) == 0 {
		return groupView{}, false
	}
	_, isDup := ix.parent[id]
	_, hasDups := ix.children[id]
	if !isDup && !hasDups {
		return groupView{}, false
	}
	root := s.canonical(id)
	members := s.group(root)
	g := groupView{canonical: root, members: members}
	if c := s.reports[root]; c != nil {
		g.status, g.note, g.updated = c.Status, c.Note, c.Updated
		if c.Filed == nil {
			g.status = event.ReportSubmitted
		}
	}
	reporter := ""
	if c := s.reports[root]; c != nil && c.Filed != nil {
		reporter = c.Filed.Body.Resident
	}
	voters := map[string]bool{}
	anonymous := uint32(0)
	for _, m := range members {
		r := s.reports[m]
		if r == nil {
			continue
		}
		for v := range r.Voters {
			voters[v] = true
		}
		if m != root && r.Filed != nil {
			// Whoever filed a duplicate said "me too" by filing.
			if res := r.Filed.Body.Resident; res != "" {
				voters[res] = true
			} else {
				anonymous++
			}
		}
		g.updated = max(g.updated, r.Updated)
		for _, mf := range r.Merges {
			g.updated = max(g.updated, mf.Key.HLC)
		}
	}
	delete(voters, reporter)
	g.votes = uint32(len(voters)) + anonymous
	return g, true
}

// applyGroup overlays a report's group on its API view.
func (s *State) applyGroup(rep *Report) {
	g, ok := s.viewOf(rep.ID)
	if !ok {
		return
	}
	rep.Votes, rep.Updated = g.votes, max(rep.Updated, g.updated)
	if g.canonical != rep.ID {
		rep.MergedInto, rep.Status, rep.Note = g.canonical, g.status, g.note
	}
	for _, m := range g.members {
		if m != rep.ID {
			rep.Duplicates = append(rep.Duplicates, m)
		}
	}
}

// mergeHistory adds the merge steps that concern a report to its history,
// in time order.
func (s *State) mergeHistory(rep *Report) {
	steps := s.index().steps[rep.ID]
	if len(steps) == 0 {
		return
	}
	rep.History = append(rep.History, steps...)
	slices.SortStableFunc(rep.History, func(a, b HistoryEntry) int {
		if c := cmp.Compare(a.HLC, b.HLC); c != 0 {
			return c
		}
		return cmp.Compare(a.Device, b.Device)
	})
}

// applyGroupView overlays a report's group on its downlink view.
func (s *State) applyGroupView(v *ReportView) {
	g, ok := s.viewOf(v.ID)
	if !ok {
		return
	}
	v.Votes, v.Updated = g.votes, max(v.Updated, g.updated)
	if g.canonical != v.ID {
		v.MergedInto, v.Status, v.Note = g.canonical, g.status, g.note
	}
}

// CheckMerge tells the hub API whether a merge may be recorded now: both
// reports exist at the same site, and into is not (through its own
// merges) a duplicate of dup, which would close a cycle. An unmerge (no
// into) needs a report that is merged now.
func (s *State) CheckMerge(m *event.ReportMerge) error {
	dup, into := s.lookupReport(m.Report), s.lookupReport(m.Into)
	if dup == nil || dup.Filed == nil {
		return fmt.Errorf("merge report %s: %w", m.Report, ErrNotFound)
	}
	if m.Into == "" {
		if _, merged := s.index().parent[m.Report]; !merged {
			return fmt.Errorf("unmerge report %s: it is not merged into another: %w", m.Report, ErrBadTransition)
		}
		return nil
	}
	if into == nil || into.Filed == nil {
		return fmt.Errorf("merge into report %s: %w", m.Into, ErrNotFound)
	}
	if dup.Site != into.Site {
		return fmt.Errorf("merge report %s of %s into %s of %s: %w", m.Report, dup.Site, m.Into, into.Site, ErrBadTransition)
	}
	if s.canonical(m.Into) == m.Report || s.canonical(m.Into) == s.canonical(m.Report) && s.canonical(m.Report) != m.Into {
		return fmt.Errorf("merge report %s into %s: they are one group already: %w", m.Report, m.Into, ErrBadTransition)
	}
	return nil
}

// mergedInto is the report a duplicate follows, or "".
func (s *State) mergedInto(id string) string {
	if c := s.canonical(id); c != id {
		return c
	}
	return ""
}
