package merge

import (
	"fmt"
	"slices"
	"strings"

	"linli/shared/event"
	"linli/shared/hlc"
)

// activity keeps the facts of one activity and what follows from them.
type activity struct {
	dirty bool // waits for refold at the end of a batch

	ID       string            `cbor:"1,keyasint"`
	Def      *activityDef      `cbor:"2,keyasint,omitempty"` // the winning ActivitySet; nil until one arrives
	Checkins []checkinFact     `cbor:"3,keyasint,omitempty"` // sorted by key
	Promotes []promoteFact     `cbor:"4,keyasint,omitempty"` // sorted by key
	Shares   map[string]*share `cbor:"5,keyasint,omitempty"` // by kiosk
	Updated  hlc.Timestamp     `cbor:"6,keyasint,omitempty"`

	// Derived from the facts above by refold.
	Attendees []attendee `cbor:"7,keyasint,omitempty"` // by resident
	Waitlist  []string   `cbor:"8,keyasint,omitempty"` // in key order of first check-in
	Seated    uint32     `cbor:"9,keyasint,omitempty"`
	Reserve   int64      `cbor:"10,keyasint,omitempty"`
}

type activityDef struct {
	Key key               `cbor:"1,keyasint"`
	Set event.ActivitySet `cbor:"2,keyasint"`
}

type checkinFact struct {
	Key      key    `cbor:"1,keyasint"`
	Resident string `cbor:"2,keyasint"`
	Out      bool   `cbor:"3,keyasint,omitempty"`
	Status   string `cbor:"4,keyasint,omitempty"`
	Act      string `cbor:"5,keyasint,omitempty"` // as the kiosk judged it; "" when it did not know the activity
}

func compareCheckin(a, b checkinFact) int { return a.Key.compare(b.Key) }

type promoteFact struct {
	Key      key    `cbor:"1,keyasint"`
	Resident string `cbor:"2,keyasint"`
	From     string `cbor:"3,keyasint"`
}

func comparePromote(a, b promoteFact) int { return a.Key.compare(b.Key) }

// share is one kiosk's escrow account. The first four fields are grow-only
// counters merged by max; Used and Unused are derived.
type share struct {
	Granted      uint32 `cbor:"1,keyasint,omitempty"` // cumulative seats granted (or seen granted by a release)
	RecallAt     uint32 `cbor:"2,keyasint,omitempty"` // the cumulative grant the latest recall covers
	Returned     uint32 `cbor:"3,keyasint,omitempty"` // cumulative seats the kiosk released
	ReleasedUsed uint32 `cbor:"4,keyasint,omitempty"` // Used in the kiosk's latest release: shown, not counted
	Used         uint32 `cbor:"5,keyasint,omitempty"` // derived: confirmations from this kiosk the hub holds
	Unused       uint32 `cbor:"6,keyasint,omitempty"` // derived: held seats without such a confirmation
}

// recalled reports whether a recall is in force: it covers the whole
// current grant.
func (sh *share) recalled() bool { return sh.Granted > 0 && sh.RecallAt >= sh.Granted }

// attendee is one resident's standing in an activity.
type attendee struct {
	Resident  string `cbor:"1,keyasint"`
	Confirmed bool   `cbor:"2,keyasint,omitempty"`
	Left      bool   `cbor:"3,keyasint,omitempty"` // checked out: holds no seat
	CheckedIn bool   `cbor:"4,keyasint,omitempty"` // has a check-in ("in")
	FirstIn   key    `cbor:"5,keyasint"`           // their first check-in, if CheckedIn
	Millis    int64  `cbor:"6,keyasint,omitempty"` // attended time of matched in/out pairs
	SignedUp  bool   `cbor:"7,keyasint,omitempty"` // has a check-in before the window (报名)
	Attended  bool   `cbor:"8,keyasint,omitempty"` // has a check-in inside the window (到场签到)
}

func (s *State) activity(id string) *activity {
	s.pageIn(RefActivity, id)
	a := s.activities[id]
	if a == nil {
		a = &activity{ID: id}
		s.activities[id] = a
	}
	return a
}

func (a *activity) site() string {
	if a.Def == nil {
		return ""
	}
	return a.Def.Set.Site
}

func (a *activity) ref() []Ref { return []Ref{{Kind: RefActivity, Site: a.site(), ID: a.ID}} }

func (a *activity) share(kiosk string) *share {
	if a.Shares == nil {
		a.Shares = map[string]*share{}
	}
	sh := a.Shares[kiosk]
	if sh == nil {
		sh = &share{}
		a.Shares[kiosk] = sh
	}
	return sh
}

func (s *State) applyActivitySet(k key, b *event.ActivitySet) []Ref {
	a := s.activity(b.ID)
	if a.Def != nil && a.Def.Key.compare(k) >= 0 {
		return nil
	}
	a.Def = &activityDef{Key: k, Set: *b}
	s.touchActivity(a)
	return a.ref()
}

func (s *State) applyCheckin(k key, b *event.Checkin) []Ref {
	a := s.activity(b.Activity)
	f := checkinFact{Key: k, Resident: b.Resident, Out: b.Action == "out", Status: b.Status, Act: b.Act}
	if !insertSorted(&a.Checkins, f, compareCheckin) {
		return nil
	}
	s.touchActivity(a)
	return a.ref()
}

func (s *State) applyPromote(k key, b *event.Promote) []Ref {
	a := s.activity(b.Activity)
	if !insertSorted(&a.Promotes, promoteFact{Key: k, Resident: b.Resident, From: b.From}, comparePromote) {
		return nil
	}
	s.touchActivity(a)
	return a.ref()
}

// applyShare merges a grant, recall or release into a kiosk's account;
// update reports whether any counter grew.
func (s *State) applyShare(activityID, kiosk string, k key, update func(*share) bool) []Ref {
	a := s.activity(activityID)
	_, had := a.Shares[kiosk]
	grew := update(a.share(kiosk))
	// Updated takes the HLC of every such fact, also of one that raised no
	// counter (two grants of the same seats): taking it only on growth
	// would make it depend on which of them came first.
	if !grew && had && k.HLC <= a.Updated {
		return nil
	}
	a.Updated = max(a.Updated, k.HLC)
	s.touchActivity(a)
	return a.ref()
}

// refoldActivity recomputes attendance and the escrow accounts from the
// facts. Check-ins are sorted by key, so each resident's own check-ins are
// visited in key order.
func (s *State) refoldActivity(a *activity) {
	// Built afresh in place of the old attendees; one map lookup and no
	// allocation per check-in keeps a busy activity's refold cheap. The
	// old attendees, sorted by resident, are laid out first in that order:
	// the residents a batch adds are then all that need sorting (sorting
	// a busy activity's 30,000 attendees at every batch was most of the
	// hub's time), and those no fact names any more (erased) drop out.
	seeded := 0
	if slices.IsSortedFunc(a.Attendees, byResident) {
		seeded = len(a.Attendees)
	}
	atts := a.Attendees[:0]
	index := make(map[string]int, len(a.Attendees)+1)
	openIn := make([]int64, seeded, len(a.Attendees)+1) // per attendee: wall ms of the check-in the next check-out pairs with, or -1
	named := make([]bool, seeded, len(a.Attendees)+1)   // per attendee: a fact names them
	for i := range seeded {
		r := a.Attendees[i].Resident
		atts = append(atts, attendee{Resident: r})
		index[r], openIn[i] = i, -1
	}
	get := func(r string) int {
		i, ok := index[r]
		if !ok {
			i = len(atts)
			index[r] = i
			atts = append(atts, attendee{Resident: r})
			openIn = append(openIn, -1)
			named = append(named, true)
		}
		named[i] = true
		return i
	}
	// used_k: distinct residents per kiosk, counted as the check-ins come
	// (sorting every confirmation of a busy activity at every batch, to
	// count them, was a fifth of the hub's time). A resident is nearly
	// always confirmed by one kiosk: the first is kept per attendee, any
	// other in a map.
	type kioskResident struct {
		kiosk    string
		resident int
	}
	used := map[string]uint32{}
	type first struct {
		kiosk string
		set   bool
	}
	firstBy := make([]first, 0, len(a.Attendees)+1) // per attendee
	var alsoBy map[kioskResident]bool
	confirmedBy := func(kiosk string, i int) {
		for len(firstBy) <= i {
			firstBy = append(firstBy, first{})
		}
		switch f := firstBy[i]; {
		case !f.set:
			firstBy[i] = first{kiosk, true}
		case f.kiosk == kiosk || alsoBy[kioskResident{kiosk, i}]:
			return
		default:
			if alsoBy == nil {
				alsoBy = map[kioskResident]bool{}
			}
			alsoBy[kioskResident{kiosk, i}] = true
		}
		used[kiosk]++
	}
	updated := a.Updated
	var win event.Window // no definition yet: everything is attendance until it comes
	if a.Def != nil {
		updated = max(updated, a.Def.Key.HLC)
		win = a.Def.Set.Window()
	}
	for _, c := range a.Checkins {
		updated = max(updated, c.Key.HLC)
		at := c.Key.HLC.WallMillis()
		act := c.Act
		if act == "" || c.Out {
			// A kiosk that did not know the activity left the act to
			// the hub: the event's own time decides, as a kiosk would
			// have. A kiosk's own judgement stands (the activity may have
			// moved since), so the fold depends on the facts alone.
			act = win.Act(at)
		}
		if !c.Out && act == event.ActEnded {
			if c.Status == event.StatusConfirmed {
				// The kiosk's account exists whatever the window says
				// (it may move), so the set of accounts depends on the
				// facts alone.
				a.share(c.Key.Device)
			}
			continue // after the end: no seat, no attendance
		}
		i := get(c.Resident)
		res := &atts[i]
		if c.Out {
			res.Left = true
			if openIn[i] >= 0 {
				// Hours only from attendance, and only inside the window.
				res.Millis += win.Clamp(openIn[i], at)
				openIn[i] = -1
			}
			continue
		}
		if act == event.ActSignup {
			res.SignedUp = true
		} else {
			res.Attended = true
			openIn[i] = at // the latest check-in counts
		}
		if !res.CheckedIn {
			res.CheckedIn, res.FirstIn = true, c.Key
		}
		if c.Status == event.StatusConfirmed {
			res.Confirmed = true
			confirmedBy(c.Key.Device, i)
		}
	}
	for _, p := range a.Promotes {
		updated = max(updated, p.Key.HLC)
		atts[get(p.Resident)].Confirmed = true
	}
	if rs := s.ratings[a.ID]; rs != nil {
		updated = max(updated, rs.Updated)
	}
	a.Updated = updated

	atts = sortAttendees(atts, named, seeded)
	a.Seated = 0
	var waiting []int
	for i, at := range atts {
		switch {
		case at.Confirmed && !at.Left:
			a.Seated++
		case !at.Confirmed && at.CheckedIn:
			waiting = append(waiting, i)
		}
	}
	slices.SortFunc(waiting, func(x, y int) int { return atts[x].FirstIn.compare(atts[y].FirstIn) })
	a.Waitlist = a.Waitlist[:0]
	for _, i := range waiting {
		a.Waitlist = append(a.Waitlist, atts[i].Resident)
	}
	a.Attendees = atts
	s.countActivityRatings(a)

	for kiosk := range used {
		a.share(kiosk) // a kiosk that confirms without a grant still gets an account
	}
	var unused int64
	for kiosk, sh := range a.Shares {
		// Only confirmations the hub holds count as used. A release may
		// report more, but those residents are seated nowhere in this
		// state yet: counting them as used would free their seats twice.
		sh.Used = used[kiosk]
		sh.Unused = uint32(max(0, int64(sh.Granted)-int64(sh.Returned)-int64(sh.Used)))
		unused += int64(sh.Unused)
	}
	a.Reserve = 0
	if a.Def != nil && a.Def.Set.Capacity > 0 {
		a.Reserve = int64(a.Def.Set.Capacity) - int64(a.Seated) - unused
	}
	if len(a.Attendees) == 0 {
		a.Attendees = nil
	}
	if len(a.Waitlist) == 0 {
		a.Waitlist = nil
	}
}

// countActivityRatings counts the ratings of an activity by residents who
// attended it; the others are kept (a check-in may still arrive) but
// counted as ignored. Called from the refold, so the counts follow the
// attendance whatever order ratings and check-ins arrive in.
func (s *State) countActivityRatings(a *activity) {
	rs := s.ratings[a.ID]
	if rs == nil {
		return
	}
	rs.Count, rs.Sum, rs.Ignored = 0, 0, 0
	for res, f := range rs.Latest {
		if at := a.attendee(res); at == nil || !at.Attended {
			rs.Ignored++
			continue
		}
		rs.Count++
		rs.Sum += uint32(f.Score)
	}
}

// Activity is a merged activity as the hub API serves it.
type Activity struct {
	ID          string `json:"id"`
	Title       string `json:"title"`
	Kind        string `json:"kind"`
	Site        string `json:"site"`
	Start       int64  `json:"start,omitempty"` // Unix milliseconds
	End         int64  `json:"end,omitempty"`
	Capacity    uint32 `json:"capacity"` // 0: no limit
	Venue       string `json:"venue,omitempty"`
	Description string `json:"description,omitempty"`
	Cancelled   bool   `json:"cancelled,omitempty"`
	// Confirmed lists every resident ever confirmed, by id; a confirmation
	// is never revoked, also not by checking out.
	Confirmed []string `json:"confirmed"`
	// Waitlist lists residents with a check-in and no seat, in key order of
	// their first check-in. Those in Left are no longer promoted.
	Waitlist []string `json:"waitlist"`
	// Left lists residents who checked out, by id: they hold no seat.
	Left []string `json:"left"`
	// Seated counts confirmed residents who have not checked out; it never
	// exceeds Capacity.
	Seated uint32 `json:"seated"`
	// Attendance counts confirmed residents who checked in inside the
	// check-in window (到场签到); a sign-up ahead of it is not attendance.
	Attendance uint32 `json:"attendance"`
	// Signups counts residents who signed up before the window (报名),
	// whether they came or not.
	Signups uint32 `json:"signups"`
	// Attended lists residents who checked in inside the window, by id.
	Attended []string `json:"attended"`
	// CheckinOpens is the start of the attendance window (Unix
	// milliseconds; absent without a start).
	CheckinOpens int64 `json:"checkin_opens,omitempty"`
	// Hours lists attended time per resident, by resident.
	Hours   []Hours       `json:"hours"`
	Kiosks  []KioskLedger `json:"kiosks"`
	Reserve int64         `json:"reserve"` // negative after capacity was lowered below what is out
	Rating  RatingSummary `json:"rating"`
	Updated hlc.Timestamp `json:"updated"`
}

// Hours is a resident's attended time from matched check-in/out pairs.
type Hours struct {
	Resident string  `json:"resident"`
	Millis   int64   `json:"millis"`
	Hours    float64 `json:"hours"`
}

// KioskLedger is the hub's account of one kiosk's share.
type KioskLedger struct {
	Device   string `json:"device"`
	Granted  uint32 `json:"granted"`  // cumulative
	Returned uint32 `json:"returned"` // cumulative, from the kiosk's releases
	Used     uint32 `json:"used"`     // distinct residents confirmed there, as far as the hub has received
	Reported uint32 `json:"reported"` // the Used of the kiosk's latest release
	// Unused counts held seats without a confirmation the hub has
	// received: free at the kiosk, or taken by check-ins still on their
	// way. The reserve leaves them out.
	Unused   uint32 `json:"unused"`
	Recalled bool   `json:"recalled"`
}

// Activity returns the merged activity, or ErrNotFound before its
// ActivitySet arrived.
func (s *State) Activity(id string) (Activity, error) {
	if t := s.fromArchive(RefActivity, id); t != nil {
		return t.Activity(id)
	}
	a := s.activities[id]
	if a == nil || a.Def == nil {
		return Activity{}, fmt.Errorf("activity %s: %w", id, ErrNotFound)
	}
	d := &a.Def.Set
	out := Activity{
		ID: a.ID, Title: d.Title, Kind: d.Type, Site: d.Site, Start: d.Start, End: d.End, Capacity: d.Capacity,
		Venue: d.Venue, Description: d.Description, Cancelled: d.Cancelled,
		Confirmed: []string{}, Waitlist: append([]string{}, a.Waitlist...), Left: []string{}, Hours: []Hours{},
		Kiosks: []KioskLedger{}, Seated: a.Seated, Reserve: a.Reserve, Rating: s.Rating(id), Updated: a.Updated,
		Attended: []string{}, CheckinOpens: d.Window().Opens,
	}
	for _, at := range a.Attendees {
		if at.Confirmed {
			out.Confirmed = append(out.Confirmed, at.Resident)
			if at.Attended {
				out.Attendance++
			}
		}
		if at.SignedUp {
			out.Signups++
		}
		if at.Attended {
			out.Attended = append(out.Attended, at.Resident)
		}
		if at.Left {
			out.Left = append(out.Left, at.Resident)
		}
		if at.Millis > 0 {
			out.Hours = append(out.Hours, Hours{Resident: at.Resident, Millis: at.Millis, Hours: float64(at.Millis) / 3.6e6})
		}
	}
	for _, kiosk := range sortedKeys(a.Shares) {
		sh := a.Shares[kiosk]
		out.Kiosks = append(out.Kiosks, KioskLedger{Device: kiosk, Granted: sh.Granted, Returned: sh.Returned,
			Used: sh.Used, Reported: sh.ReleasedUsed, Unused: sh.Unused, Recalled: sh.recalled()})
	}
	return out, nil
}

// Activities lists the activities of a site ("" for every site) by id.
// Ended activities in the archive are read from it, one at a time.
func (s *State) Activities(site string) []Activity {
	out := s.activitiesOf(site)
	var old []Activity
	s.scanArchive(RefActivity, func(id string, t *State) { old = append(old, t.activitiesOf(site)...) })
	return mergeByID(out, old, func(a Activity) string { return a.ID })
}

func (s *State) activitiesOf(site string) []Activity {
	out := []Activity{}
	for _, id := range sortedKeys(s.activities) {
		if a := s.activities[id]; a.Def != nil && (site == "" || a.site() == site) {
			act, _ := s.Activity(id) // cannot fail: defined
			out = append(out, act)
		}
	}
	return out
}

func byResident(x, y attendee) int { return strings.Compare(x.Resident, y.Resident) }

// sortAttendees keeps the attendees some fact names, sorted by resident:
// the first seeded are sorted already, the rest (a batch's new residents)
// are sorted and merged in.
func sortAttendees(atts []attendee, named []bool, seeded int) []attendee {
	k, old := 0, 0
	for i := range atts {
		if named[i] {
			if i < seeded {
				old++
			}
			atts[k] = atts[i]
			k++
		}
	}
	atts = atts[:k]
	add := atts[old:]
	slices.SortFunc(add, byResident)
	if old == 0 || len(add) == 0 || atts[old-1].Resident < add[0].Resident {
		return atts
	}
	merged := make([]attendee, 0, len(atts))
	i, j := 0, old
	for i < old && j < len(atts) {
		if atts[i].Resident < atts[j].Resident {
			merged = append(merged, atts[i])
			i++
		} else {
			merged = append(merged, atts[j])
			j++
		}
	}
	merged = append(append(merged, atts[i:old]...), atts[j:]...)
	copy(atts, merged)
	return atts
}

// attendee finds a resident's standing, or nil.
func (a *activity) attendee(resident string) *attendee {
	i, ok := slices.BinarySearchFunc(a.Attendees, resident, func(at attendee, r string) int { return strings.Compare(at.Resident, r) })
	if !ok {
		return nil
	}
	return &a.Attendees[i]
}

// Outcome is a resident's standing in an activity: event.StatusConfirmed,
// event.StatusWaitlisted, or "" without a check-in or promotion.
func (s *State) Outcome(activityID, resident string) string {
	if t := s.fromArchive(RefActivity, activityID); t != nil {
		return t.Outcome(activityID, resident)
	}
	a := s.activities[activityID]
	if a == nil {
		return ""
	}
	switch at := a.attendee(resident); {
	case at == nil:
		return ""
	case at.Confirmed:
		return event.StatusConfirmed
	case at.CheckedIn:
		return event.StatusWaitlisted
	}
	return ""
}

// ActivityView is what a kiosk holds of an activity: enough to show it and
// to answer check-ins from its own share (see Ledger.Sync).
type ActivityView struct {
	ID        string        `cbor:"1,keyasint" json:"id"`
	Title     string        `cbor:"2,keyasint" json:"title"`
	Kind      string        `cbor:"3,keyasint" json:"kind"`
	Site      string        `cbor:"4,keyasint" json:"site"`
	Start     int64         `cbor:"5,keyasint,omitempty" json:"start,omitempty"`
	End       int64         `cbor:"6,keyasint,omitempty" json:"end,omitempty"`
	Capacity  uint32        `cbor:"7,keyasint" json:"capacity"`
	Confirmed []string      `cbor:"8,keyasint" json:"confirmed"` // by resident id
	Waitlist  []string      `cbor:"9,keyasint" json:"waitlist"`  // in queue order
	SeatsLeft uint32        `cbor:"10,keyasint" json:"seats_left"`
	Kiosks    []KioskShare  `cbor:"11,keyasint" json:"kiosks"` // by device
	Updated   hlc.Timestamp `cbor:"12,keyasint" json:"updated"`
	// CheckinOpens is when attendance check-in opens (Unix milliseconds;
	// 0: from the first moment): before it a check-in is a sign-up.
	CheckinOpens int64 `cbor:"13,keyasint,omitempty" json:"checkin_opens,omitempty"`
	// Attended lists residents who checked in inside the window, sorted:
	// only they may rate the activity.
	Attended []string `cbor:"14,keyasint,omitempty" json:"attended,omitempty"`
	// Later fields, left out when empty so an older view's bytes stay.
	Venue       string `cbor:"15,keyasint,omitempty" json:"venue,omitempty"`
	Description string `cbor:"16,keyasint,omitempty" json:"description,omitempty"`
	Cancelled   bool   `cbor:"17,keyasint,omitempty" json:"cancelled,omitempty"`
}

// Window is the attendance window of the activity the view shows.
func (v *ActivityView) Window() event.Window { return event.Window{Opens: v.CheckinOpens, End: v.End} }

// KioskShare is a kiosk's share as the hub sends it down.
type KioskShare struct {
	Device   string `cbor:"1,keyasint" json:"device"`
	Granted  uint32 `cbor:"2,keyasint" json:"granted"`  // cumulative
	Recalled bool   `cbor:"3,keyasint" json:"recalled"` // give unused seats back and confirm no more from this grant
}

// ActivityView returns the downlink view of an activity, or ErrNotFound.
func (s *State) ActivityView(id string) (ActivityView, error) {
	act, err := s.Activity(id)
	if err != nil {
		return ActivityView{}, err
	}
	v := ActivityView{ID: act.ID, Title: act.Title, Kind: act.Kind, Site: act.Site, Start: act.Start, End: act.End,
		Capacity: act.Capacity, Confirmed: act.Confirmed, Waitlist: act.Waitlist, Kiosks: []KioskShare{}, Updated: act.Updated,
		CheckinOpens: act.CheckinOpens, Attended: act.Attended,
		Venue: act.Venue, Description: act.Description, Cancelled: act.Cancelled}
	if len(v.Attended) == 0 {
		v.Attended = nil
	}
	if act.Capacity > act.Seated {
		v.SeatsLeft = act.Capacity - act.Seated
	}
	for _, k := range act.Kiosks {
		if k.Granted > 0 {
			v.Kiosks = append(v.Kiosks, KioskShare{Device: k.Device, Granted: k.Granted, Recalled: k.Recalled})
		}
	}
	return v, nil
}

// Share is the kiosk's entry of the view (zero when it has none).
func (v *ActivityView) Share(kiosk string) KioskShare {
	i, ok := slices.BinarySearchFunc(v.Kiosks, kiosk, func(k KioskShare, d string) int { return strings.Compare(k.Device, d) })
	if !ok {
		return KioskShare{Device: kiosk}
	}
	return v.Kiosks[i]
}

// ActivitySet returns the winning definition of an activity, the base an
// operator's edit changes, or ErrNotFound.
func (s *State) ActivitySet(id string) (event.ActivitySet, error) {
	if t := s.fromArchive(RefActivity, id); t != nil {
		return t.ActivitySet(id)
	}
	a := s.activities[id]
	if a == nil || a.Def == nil {
		return event.ActivitySet{}, fmt.Errorf("activity %s: %w", id, ErrNotFound)
	}
	return a.Def.Set, nil
}
