package merge

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"linli/shared/event"
	"linli/shared/hlc"
)

// report keeps the facts of one report and what follows from them.
type report struct {
	dirty bool // waits for refold at the end of a batch

	ID      string         `cbor:"1,keyasint"`
	Site    string         `cbor:"2,keyasint,omitempty"`
	Filed   *filedReport   `cbor:"3,keyasint,omitempty"` // nil until the report event arrives
	Patches []patchFact    `cbor:"4,keyasint,omitempty"` // sorted by key
	Voters  map[string]key `cbor:"5,keyasint,omitempty"` // resident → their first vote

	// Derived from the facts above by refold.
	Status   string         `cbor:"6,keyasint,omitempty"`
	Note     string         `cbor:"7,keyasint,omitempty"`
	Assignee string         `cbor:"8,keyasint,omitempty"`
	Votes    uint32         `cbor:"9,keyasint,omitempty"`
	Updated  hlc.Timestamp  `cbor:"10,keyasint,omitempty"`
	History  []HistoryEntry `cbor:"11,keyasint,omitempty"`

	Merges []mergeFact `cbor:"12,keyasint,omitempty"` // sorted by key; see reportmerge.go

	// InternalNote is the latest internal note (derived); Note above is
	// the latest public reply, the only note that leaves the hub.
	InternalNote string `cbor:"13,keyasint,omitempty"`
}

type filedReport struct {
	Key  key          `cbor:"1,keyasint"`
	Body event.Report `cbor:"2,keyasint"`
}

type patchFact struct {
	Key   key               `cbor:"1,keyasint"`
	Patch event.ReportPatch `cbor:"2,keyasint"`
	// Reopen marks a resident's "still not fixed" from a kiosk: Who is
	// the resident and Note their reason; it only moves a resolved report.
	Reopen bool `cbor:"3,keyasint,omitempty"`
}

func comparePatch(a, b patchFact) int { return a.Key.compare(b.Key) }

// History event names.
const (
	HistoryCreated  = "created"
	HistoryPatched  = "patched"
	HistoryReopened = "reopened" // a resident said a resolved report is still not fixed
)

// HistoryEntry is one step of a report's history, in key order.
type HistoryEntry struct {
	Event    string        `cbor:"1,keyasint" json:"event"` // HistoryCreated or HistoryPatched
	HLC      hlc.Timestamp `cbor:"2,keyasint" json:"hlc"`
	Device   string        `cbor:"3,keyasint" json:"device"`
	Seq      uint64        `cbor:"4,keyasint" json:"seq"`
	Status   string        `cbor:"5,keyasint,omitempty" json:"status,omitempty"` // the status it set, if it changed
	Note     string        `cbor:"6,keyasint,omitempty" json:"note,omitempty"`
	Assignee string        `cbor:"7,keyasint,omitempty" json:"assignee,omitempty"`
	Who      string        `cbor:"8,keyasint,omitempty" json:"who,omitempty"` // the operator, or the resident who filed
	// Internal marks Note as an internal note, kept at the hub.
	Internal bool `cbor:"9,keyasint,omitempty" json:"internal,omitempty"`
}

func (s *State) report(id string) *report {
	s.pageIn(RefReport, id)
	r := s.reports[id]
	if r == nil {
		r = &report{ID: id}
		s.reports[id] = r
	}
	return r
}

func (r *report) ref() []Ref { return []Ref{{Kind: RefReport, Site: r.Site, ID: r.ID}} }

func (s *State) applyReport(site string, k key, b *event.Report) []Ref {
	id := k.id()
	r := s.report(id)
	if r.Filed != nil {
		return nil
	}
	r.Site = site
	r.Filed = &filedReport{Key: k, Body: *b}
	s.touchReport(r)
	return r.ref()
}

func (s *State) applyVote(k key, b *event.Vote) []Ref {
	r := s.report(b.Report)
	// The earliest vote of a resident is the one that counted them.
	if old, ok := r.Voters[b.Resident]; ok && old.compare(k) <= 0 {
		return nil
	}
	if r.Voters == nil {
		r.Voters = map[string]key{}
	}
	r.Voters[b.Resident] = k
	s.touchReport(r)
	return r.ref()
}

func (s *State) applyPatch(k key, b *event.ReportPatch) []Ref {
	return s.insertPatch(b.Report, patchFact{Key: k, Patch: *b})
}

// applyReopen keeps a reopen among the patches, so the fold meets it in
// key order: after the resolution it reopens, it moves the report back to
// accepted; before it (or on an open report) it changes nothing.
func (s *State) applyReopen(k key, b *event.ReportReopen) []Ref {
	return s.insertPatch(b.Report, patchFact{Key: k, Reopen: true,
		Patch: event.ReportPatch{Report: b.Report, Note: b.Reason, Who: b.Resident}})
}

func (s *State) insertPatch(id string, p patchFact) []Ref {
	r := s.report(id)
	if !insertSorted(&r.Patches, p, comparePatch) {
		return nil
	}
	s.touchReport(r)
	return r.ref()
}

// statusRank orders the forward lifecycle; rejected ends it from any
// open status.
var statusRank = map[string]int{
	event.ReportSubmitted:  0,
	event.ReportAccepted:   1,
	event.ReportInProgress: 2,
	event.ReportResolved:   3,
}

// transition reports whether a report may move from one status to another:
// forward along the lifecycle (skipping steps is allowed), or to rejected
// while still open. Resolved and rejected are final.
func transition(from, to string) bool {
	switch {
	case from == event.ReportResolved || from == event.ReportRejected:
		return false
	case to == event.ReportRejected:
		return true
	}
	rt, ok := statusRank[to]
	return ok && rt > statusRank[from]
}

// refoldReport recomputes the derived fields from the facts, in key order,
// so the result does not depend on the order facts arrived in.
func (s *State) refoldReport(r *report) {
	r.Status, r.Note, r.InternalNote, r.Assignee, r.Updated = event.ReportSubmitted, "", "", "", 0
	r.History = r.History[:0]
	created := func() {
		f := r.Filed
		r.History = append(r.History, HistoryEntry{Event: HistoryCreated, HLC: f.Key.HLC, Device: f.Key.Device,
			Seq: f.Key.Seq, Status: event.ReportSubmitted, Who: f.Body.Resident})
		r.Updated = max(r.Updated, f.Key.HLC)
	}
	pending := r.Filed != nil
	for _, p := range r.Patches {
		if pending && r.Filed.Key.compare(p.Key) < 0 {
			created()
			pending = false
		}
		h := HistoryEntry{Event: HistoryPatched, HLC: p.Key.HLC, Device: p.Key.Device, Seq: p.Key.Seq, Who: p.Patch.Who}
		if p.Reopen {
			if r.Status == event.ReportResolved {
				h.Event, h.Status, h.Note = HistoryReopened, event.ReportAccepted, p.Patch.Note
				r.Status = event.ReportAccepted
				r.History = append(r.History, h)
				r.Updated = max(r.Updated, p.Key.HLC)
			}
			continue
		}
		changed := false
		if st := p.Patch.Status; st != "" && st != r.Status && transition(r.Status, st) {
			r.Status, h.Status, changed = st, st, true
		}
		switch {
		case p.Patch.Note != "" && p.Patch.Internal:
			r.InternalNote, h.Note, h.Internal, changed = p.Patch.Note, p.Patch.Note, true, true
		case p.Patch.Note != "":
			r.Note, h.Note, changed = p.Patch.Note, p.Patch.Note, true
		}
		if p.Patch.Assignee != "" {
			r.Assignee, h.Assignee, changed = p.Patch.Assignee, p.Patch.Assignee, true
		}
		if changed {
			r.History = append(r.History, h)
			r.Updated = max(r.Updated, p.Key.HLC)
		}
	}
	if pending {
		created()
	}
	if len(r.History) == 0 {
		r.History = nil // so a report that lost nothing encodes like a fresh one
	}
	r.Votes = 0
	reporter := ""
	if r.Filed != nil {
		reporter = r.Filed.Body.Resident
	}
	for resident, k := range r.Voters {
		if resident != reporter {
			r.Votes++
			r.Updated = max(r.Updated, k.HLC)
		}
	}
	if rs := s.ratings[r.ID]; rs != nil {
		r.Updated = max(r.Updated, rs.Updated)
	}
}

// CheckPatch tells the hub API whether an operator's patch may be recorded
// now: the report must exist and the status change must be legal from its
// current status. Apply itself accepts any patch, in any order.
func (s *State) CheckPatch(p *event.ReportPatch) error {
	if t := s.fromArchive(RefReport, p.Report); t != nil {
		return t.CheckPatch(p)
	}
	r := s.reports[p.Report]
	if r == nil || r.Filed == nil {
		return fmt.Errorf("patch report %s: %w", p.Report, ErrNotFound)
	}
	if into := s.mergedInto(p.Report); into != "" {
		return fmt.Errorf("patch report %s: it is merged into %s; change that one: %w", p.Report, into, ErrBadTransition)
	}
	if p.Status != "" && p.Status != r.Status && !transition(r.Status, p.Status) {
		return fmt.Errorf("patch report %s from %s to %s: %w", p.Report, r.Status, p.Status, ErrBadTransition)
	}
	return nil
}

// Report is a merged report as the hub API serves it.
type Report struct {
	ID          string          `json:"id"`
	Site        string          `json:"site"`
	Status      string          `json:"status"`
	Category    string          `json:"category"`
	Title       string          `json:"title"`
	Description string          `json:"description,omitempty"`
	Building    string          `json:"building"`
	Unit        string          `json:"unit,omitempty"`
	Location    *event.GeoPoint `json:"location,omitempty"`
	Resident    string          `json:"resident,omitempty"` // empty: filed anonymously
	Votes       uint32          `json:"votes"`
	Created     hlc.Timestamp   `json:"created"`
	Updated     hlc.Timestamp   `json:"updated"`
	Note        string          `json:"note,omitempty"` // the latest public reply
	// InternalNote is the latest internal note: for operators only.
	InternalNote string         `json:"internal_note,omitempty"`
	Assignee     string         `json:"assignee,omitempty"`
	History      []HistoryEntry `json:"history"`
	Rating       RatingSummary  `json:"rating"`
	// MergedInto is the report this one is a duplicate of; it then shows
	// that report's status, note and votes.
	MergedInto string `json:"merged_into,omitempty"`
	// Duplicates lists the reports merged into this one (or into its
	// canonical report).
	Duplicates []string `json:"duplicates,omitempty"`
	// Number is the short number the filing kiosk gave it (B1-0007);
	// MergedIntoNumber the number of the report it is merged into.
	Number           string `json:"number,omitempty"`
	MergedIntoNumber string `json:"merged_into_number,omitempty"`
}

// Report returns the merged report with this id, or ErrNotFound when its
// report event has not arrived.
func (s *State) Report(id string) (Report, error) {
	if t := s.fromArchive(RefReport, id); t != nil {
		return t.Report(id)
	}
	r := s.reports[id]
	if r == nil || r.Filed == nil {
		return Report{}, fmt.Errorf("report %s: %w", id, ErrNotFound)
	}
	b := &r.Filed.Body
	rep := Report{
		ID: r.ID, Site: r.Site, Status: r.Status, Category: b.Category, Title: b.Title,
		Description: b.Description, Building: b.Building, Unit: b.Unit, Resident: b.Resident,
		Votes: r.Votes, Created: r.Filed.Key.HLC, Updated: r.Updated, Note: r.Note, InternalNote: r.InternalNote,
		Assignee: r.Assignee, History: slices.Clone(r.History), Rating: s.Rating(id), Number: b.Number,
	}
	if b.Location != nil {
		loc := *b.Location // the caller's copy, not the state's
		rep.Location = &loc
	}
	s.applyGroup(&rep)
	rep.MergedIntoNumber = s.number(rep.MergedInto)
	s.mergeHistory(&rep)
	return rep, nil
}

// Reports lists the reports of a site ("" for every site) by id.
func (s *State) Reports(site string) []Report {
	return s.ReportsWhere(site, func(ReportHead) bool { return true })
}

// ReportView is what a kiosk shows of a report.
type ReportView struct {
	ID       string        `cbor:"1,keyasint" json:"id"`
	Status   string        `cbor:"2,keyasint" json:"status"`
	Category string        `cbor:"3,keyasint" json:"category"`
	Title    string        `cbor:"4,keyasint" json:"title"`
	Building string        `cbor:"5,keyasint" json:"building"`
	Unit     string        `cbor:"6,keyasint,omitempty" json:"unit,omitempty"`
	Votes    uint32        `cbor:"7,keyasint" json:"votes"`
	Updated  hlc.Timestamp `cbor:"8,keyasint" json:"updated"`
	Note     string        `cbor:"9,keyasint,omitempty" json:"note,omitempty"`
	// MergedInto names the report this duplicate follows (reportmerge.go).
	MergedInto string `cbor:"10,keyasint,omitempty" json:"merged_into,omitempty"`
	// Number is the report's short number (B1-0007), MergedIntoNumber
	// that of the report it follows: what a resident reads out.
	Number           string `cbor:"11,keyasint,omitempty" json:"number,omitempty"`
	MergedIntoNumber string `cbor:"12,keyasint,omitempty" json:"merged_into_number,omitempty"`
	// Steps is the report's public timeline: filed, each status the
	// office set with its reply, reopened, merged. No resident or
	// operator names: every kiosk of the site shows it.
	Steps []ReportStep `cbor:"13,keyasint,omitempty" json:"steps,omitempty"`
}

// ReportStep is one step of a report's public timeline.
type ReportStep struct {
	Event  string        `cbor:"1,keyasint" json:"event"` // a History event name
	HLC    hlc.Timestamp `cbor:"2,keyasint" json:"hlc"`
	Status string        `cbor:"3,keyasint,omitempty" json:"status,omitempty"`
	// Reply is the office's note to residents with this step.
	Reply string `cbor:"4,keyasint,omitempty" json:"reply,omitempty"`
}

// PublicSteps is the public timeline of a history: what residents may
// read of it. A resident's own reason for reopening stays out, as do the
// names of who did what; a merge names the report by its number.
func (s *State) PublicSteps(h []HistoryEntry) []ReportStep {
	var out []ReportStep
	for _, e := range h {
		st := ReportStep{Event: e.Event, HLC: e.HLC, Status: e.Status}
		switch e.Event {
		case HistoryPatched:
			if !e.Internal { // an internal note stays at the hub
				st.Reply = e.Note
			}
			if st.Status == "" && st.Reply == "" {
				continue // an assignment only: the office's business
			}
		case HistoryMergedInto, HistoryUnmerged:
			st.Reply = cmp.Or(s.number(e.Note), e.Note)
		case HistoryMerged, HistoryDuplicateUnmerged:
			continue // another resident's report joined this one, or left it
		}
		out = append(out, st)
	}
	return out
}

// ReportByNumber finds the report of site with this short number, or
// this id. Should two kiosks of a site share a code, the smallest id
// answers, whatever order the reports came in.
func (s *State) ReportByNumber(site, number string) (string, bool) {
	if r := s.lookupReport(number); r != nil && r.Filed != nil && r.Site == site {
		return number, true
	}
	found := ""
	match := func(id string, r *report) {
		if r.Filed != nil && r.Site == site && r.Filed.Body.Number == number && (found == "" || id < found) {
			found = id
		}
	}
	for id, r := range s.reports {
		match(id, r)
	}
	// An archived report is found through the archive's index of numbers
	// (a look-up anyone may make must not read the whole archive), and
	// read to confirm it.
	if s.archive != nil {
		ids, _ := s.archive.Numbered(site, number) // a read error finds nothing; the archive logs it
		for _, id := range ids {
			if r := s.lookupReport(id); r != nil {
				match(id, r)
			}
		}
	}
	return found, found != ""
}

// lookupReport is the report with this id, in memory or archived (a
// copy), or nil.
func (s *State) lookupReport(id string) *report {
	if t := s.fromArchive(RefReport, id); t != nil {
		return t.reports[id]
	}
	return s.reports[id]
}

// number is the short number of report id, "" when it has none.
func (s *State) number(id string) string {
	if r := s.reports[id]; id != "" && r != nil && r.Filed != nil {
		return r.Filed.Body.Number
	}
	return ""
}

// ReportView returns the downlink view of a report, or ErrNotFound.
func (s *State) ReportView(id string) (ReportView, error) {
	if t := s.fromArchive(RefReport, id); t != nil {
		return t.ReportView(id)
	}
	r := s.reports[id]
	if r == nil || r.Filed == nil {
		return ReportView{}, fmt.Errorf("report %s: %w", id, ErrNotFound)
	}
	b := &r.Filed.Body
	v := ReportView{ID: r.ID, Status: r.Status, Category: b.Category, Title: b.Title, Building: b.Building,
		Unit: b.Unit, Votes: r.Votes, Updated: r.Updated, Note: r.Note, Number: b.Number}
	s.applyGroupView(&v)
	v.MergedIntoNumber = s.number(v.MergedInto)
	hist := slices.Clone(r.History)
	if steps := s.index().steps[id]; len(steps) > 0 {
		hist = append(hist, steps...)
		slices.SortStableFunc(hist, func(a, b HistoryEntry) int { return cmp.Compare(a.HLC, b.HLC) })
	}
	v.Steps = s.PublicSteps(hist)
	return v, nil
}

// ratings keeps, per target, each resident's rating with the greatest key.
type ratings struct {
	Latest map[string]ratingFact `cbor:"1,keyasint,omitempty"` // by resident

	// Derived.
	Count   uint32        `cbor:"2,keyasint,omitempty"`
	Sum     uint32        `cbor:"3,keyasint,omitempty"`
	Updated hlc.Timestamp `cbor:"4,keyasint,omitempty"`
	// Ignored counts activity ratings by residents who did not attend:
	// kept, but not in Count and Sum.
	Ignored uint32 `cbor:"5,keyasint,omitempty"`
}

type ratingFact struct {
	Key     key    `cbor:"1,keyasint"`
	Score   int    `cbor:"2,keyasint"`
	Comment string `cbor:"3,keyasint,omitempty"`
}

// RatingSummary is the count and mean of the residents' latest ratings.
type RatingSummary struct {
	Count uint32  `cbor:"1,keyasint" json:"count"`
	Sum   uint32  `cbor:"2,keyasint" json:"sum"`
	Mean  float64 `cbor:"3,keyasint" json:"mean"` // 0 without ratings
	// Ignored counts ratings of an activity by residents who did not
	// attend it: the merge leaves them out of the count and the mean.
	Ignored uint32 `cbor:"4,keyasint,omitempty" json:"ignored,omitempty"`
}

// RatingEntry is one resident's latest rating of a target.
type RatingEntry struct {
	Resident string        `json:"resident"`
	Score    int           `json:"score"`
	Comment  string        `json:"comment,omitempty"`
	HLC      hlc.Timestamp `json:"hlc"`
	// Ignored is set on a rating of an activity by a resident who did not
	// attend it: not counted.
	Ignored bool `json:"ignored,omitempty"`
}

// isReportID tells report targets (DEVICE.SEQ) from activity ids, which
// cannot hold a dot.
func isReportID(target string) bool { return strings.Contains(target, ".") }

// targetKind is the kind of entity a rating's target names.
func targetKind(target string) string {
	if isReportID(target) {
		return RefReport
	}
	return RefActivity
}

func (s *State) applyRating(k key, b *event.Rating) []Ref {
	s.pageIn(targetKind(b.Target), b.Target)
	rs := s.ratings[b.Target]
	if rs == nil {
		rs = &ratings{Latest: map[string]ratingFact{}}
		s.ratings[b.Target] = rs
	}
	if old, ok := rs.Latest[b.Resident]; ok && old.Key.compare(k) >= 0 {
		return nil
	}
	rs.Latest[b.Resident] = ratingFact{Key: k, Score: b.Score, Comment: b.Comment}
	rs.Count, rs.Sum, rs.Updated = 0, 0, 0
	for _, f := range rs.Latest {
		rs.Count++
		rs.Sum += uint32(f.Score)
		rs.Updated = max(rs.Updated, f.Key.HLC)
	}
	if isReportID(b.Target) {
		r := s.report(b.Target)
		s.touchReport(r)
		return r.ref()
	}
	a := s.activity(b.Target)
	a.Updated = max(a.Updated, k.HLC)
	s.touchActivity(a) // counts only attendees' ratings
	return a.ref()
}

// ratingIgnored tells whether resident's rating of target is left out: an
// activity they did not attend.
func (s *State) ratingIgnored(target, resident string) bool {
	if isReportID(target) {
		return false
	}
	a := s.activities[target]
	if a == nil {
		return true
	}
	at := a.attendee(resident)
	return at == nil || !at.Attended
}

// Rating summarises the latest ratings of a report or activity.
func (s *State) Rating(target string) RatingSummary {
	if t := s.fromArchive(targetKind(target), target); t != nil {
		return t.Rating(target)
	}
	rs := s.ratings[target]
	if rs == nil {
		return RatingSummary{}
	}
	if rs.Count == 0 {
		return RatingSummary{Ignored: rs.Ignored}
	}
	return RatingSummary{Count: rs.Count, Sum: rs.Sum, Mean: float64(rs.Sum) / float64(rs.Count), Ignored: rs.Ignored}
}

// Ratings lists the residents' latest ratings of a target by resident.
func (s *State) Ratings(target string) []RatingEntry {
	if t := s.fromArchive(targetKind(target), target); t != nil {
		return t.Ratings(target)
	}
	out := []RatingEntry{}
	if rs := s.ratings[target]; rs != nil {
		for _, res := range sortedKeys(rs.Latest) {
			f := rs.Latest[res]
			out = append(out, RatingEntry{Resident: res, Score: f.Score, Comment: f.Comment, HLC: f.Key.HLC,
				Ignored: s.ratingIgnored(target, res)})
		}
	}
	return out
}

// ReportHead is what a report was filed with, for filtering a list before
// the merged reports are built.
type ReportHead struct {
	ID          string
	Site        string
	Category    string
	Title       string
	Description string
	Building    string
	Unit        string
	Created     hlc.Timestamp
}

// ReportsWhere lists the reports of a site ("" for every site) by id whose
// filing keep accepts. keep sees only what was filed, so a search builds
// the merged report (history, ratings, group) of the matches alone.
//
// Archived reports (closed long ago) are read from the archive, one at a
// time: the list costs a scan of it, and holds in memory only what it
// returns.
func (s *State) ReportsWhere(site string, keep func(ReportHead) bool) []Report {
	out := s.reportsWhere(site, keep)
	var old []Report
	s.scanArchive(RefReport, func(id string, t *State) { old = append(old, t.reportsWhere(site, keep)...) })
	return mergeByID(out, old, func(r Report) string { return r.ID })
}

// HeldReportsWhere is ReportsWhere of the reports in memory only: every
// open one and those closed within the hold, not the archive's. What
// reads it costs does not grow with the years of closed reports stored.
func (s *State) HeldReportsWhere(site string, keep func(ReportHead) bool) []Report {
	return s.reportsWhere(site, keep)
}

// OpenReportsWhere is ReportsWhere of the reports neither resolved nor
// rejected. It never reads the archive, which holds only closed reports:
// what counts open reports (those past their time limit) stays as fast as
// before, however many years of closed ones the hub holds.
func (s *State) OpenReportsWhere(site string, keep func(ReportHead) bool) []Report {
	return s.reportsWhere(site, func(h ReportHead) bool {
		r := s.reports[h.ID]
		return r.Status != event.ReportResolved && r.Status != event.ReportRejected && keep(h)
	})
}

func (s *State) reportsWhere(site string, keep func(ReportHead) bool) []Report {
	out := []Report{}
	for _, id := range sortedKeys(s.reports) {
		r := s.reports[id]
		if r.Filed == nil || site != "" && r.Site != site {
			continue
		}
		b := &r.Filed.Body
		if !keep(ReportHead{ID: id, Site: r.Site, Category: b.Category, Title: b.Title, Description: b.Description,
			Building: b.Building, Unit: b.Unit, Created: r.Filed.Key.HLC}) {
			continue
		}
		rep, _ := s.Report(id) // cannot fail: filed
		out = append(out, rep)
	}
	return out
}
