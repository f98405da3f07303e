package event

import "fmt"

// Hub decision kinds: facts the hub records about its own decisions, with
// Device set to the hub's id. They are merged exactly like edge events, so
// replaying them after a restart rebuilds the same state without deciding
// anything again. Edges never send them; the hub's ingest refuses them.
const (
	KindActivitySet Kind = 64 // an operator creates or updates an activity
	KindNoticeSet   Kind = 65 // an operator publishes or updates a notice
	KindReportPatch Kind = 66 // an operator moves a report on, notes or assigns it
	KindGrant       Kind = 67 // the hub gives a kiosk a share of an activity's seats
	KindRecall      Kind = 68 // the hub asks a kiosk to give unused seats back
	KindPromote     Kind = 69 // the hub confirms a resident from its reserve
	KindAlarmAck    Kind = 70 // an operator acknowledges an alarm
	KindAlarmClear  Kind = 71 // an operator clears an alarm
)

// IsHub reports whether k is a hub decision kind, which only the hub may
// record.
func (k Kind) IsHub() bool { return k >= FirstHubKind }

// Closed vocabularies of the hub's decisions.
var (
	ActivityKinds    = []string{"activity", "volunteer", "culture"}
	NoticeCategories = []string{"announcement", "finance", "election", "safety"}
	ReportStatuses   = []string{ReportSubmitted, ReportAccepted, ReportInProgress, ReportResolved, ReportRejected}
)

// Report statuses: submitted → accepted → in_progress → resolved, or
// rejected.
const (
	ReportSubmitted  = "submitted"
	ReportAccepted   = "accepted"
	ReportInProgress = "in_progress"
	ReportResolved   = "resolved"
	ReportRejected   = "rejected"
)

// PromoteReserve is Promote.From for a resident the hub confirms without a
// check-in of theirs to resolve (an operator's booking).
const PromoteReserve = "reserve"

// maxCapacity bounds an activity's seats: far above any community hall,
// low enough that seat arithmetic never overflows.
const maxCapacity = 1 << 20

// ActivitySet creates or updates an activity; the latest by (HLC, device,
// seq) wins as a whole. Capacity 0 means no limit.
type ActivitySet struct {
	ID       string `cbor:"1,keyasint" json:"id"`
	Title    string `cbor:"2,keyasint" json:"title"`
	Type     string `cbor:"3,keyasint" json:"kind"`
	Site     string `cbor:"4,keyasint" json:"site"`
	Start    int64  `cbor:"5,keyasint,omitempty" json:"start,omitempty"` // Unix milliseconds
	End      int64  `cbor:"6,keyasint,omitempty" json:"end,omitempty"`   // Unix milliseconds; 0 = open-ended
	Capacity uint32 `cbor:"7,keyasint,omitempty" json:"capacity"`
	// CheckinOpens is how many minutes before Start attendance check-in
	// opens; nil means DefaultCheckinOpens. Before that a check-in is a
	// sign-up.
	CheckinOpens *uint32 `cbor:"8,keyasint,omitempty" json:"checkin_opens,omitempty"`
	// Venue and Description tell residents where and what; Cancelled
	// keeps a cancelled activity on the kiosks, marked so, for those who
	// signed up (later fields: an older definition decodes unchanged).
	Venue       string `cbor:"9,keyasint,omitempty" json:"venue,omitempty"`
	Description string `cbor:"10,keyasint,omitempty" json:"description,omitempty"`
	Cancelled   bool   `cbor:"11,keyasint,omitempty" json:"cancelled,omitempty"`
}

// NoticeSet publishes or updates a notice; the latest by (HLC, device, seq)
// wins as a whole. Expiry is data: readers compare it with their own now.
type NoticeSet struct {
	ID        string   `cbor:"1,keyasint" json:"id"`
	Site      string   `cbor:"2,keyasint" json:"site"`
	Buildings []string `cbor:"3,keyasint,omitempty" json:"buildings,omitempty"` // empty = the whole site
	Title     string   `cbor:"4,keyasint" json:"title"`
	Body      string   `cbor:"5,keyasint,omitempty" json:"body,omitempty"`
	Category  string   `cbor:"6,keyasint" json:"category"`
	Expires   int64    `cbor:"7,keyasint,omitempty" json:"expires,omitempty"` // Unix milliseconds; 0 = never
	// Withdrawn takes the notice off every kiosk; the hub keeps it in its
	// history. A later set of the same id without it publishes it again.
	Withdrawn bool `cbor:"8,keyasint,omitempty" json:"withdrawn,omitempty"`
}

// ReportPatch is an operator's change to a report. Empty fields leave the
// report's field as it is.
type ReportPatch struct {
	Report   string `cbor:"1,keyasint" json:"report"`
	Status   string `cbor:"2,keyasint,omitempty" json:"status,omitempty"`
	Note     string `cbor:"3,keyasint,omitempty" json:"note,omitempty"`
	Assignee string `cbor:"4,keyasint,omitempty" json:"assignee,omitempty"`
	Who      string `cbor:"5,keyasint" json:"who"` // the operator
	// Internal keeps Note at the hub: an internal note never reaches a
	// kiosk or an Open311 client. Without it a note is a public reply,
	// as every note was before notes had a visibility.
	Internal bool `cbor:"6,keyasint,omitempty" json:"internal,omitempty"`
}

// Grant gives a kiosk seats of an activity. Seats is cumulative (all seats
// ever granted to that kiosk for that activity), so grants merge by max.
type Grant struct {
	Activity string `cbor:"1,keyasint" json:"activity"`
	Kiosk    string `cbor:"2,keyasint" json:"kiosk"`
	Seats    uint32 `cbor:"3,keyasint" json:"seats"`
}

// Recall asks a kiosk to stop confirming from its share and release its
// unused seats. Granted is the kiosk's cumulative grant the recall covers:
// a later, larger grant lifts it.
type Recall struct {
	Activity string `cbor:"1,keyasint" json:"activity"`
	Kiosk    string `cbor:"2,keyasint" json:"kiosk"`
	Granted  uint32 `cbor:"3,keyasint" json:"granted"`
}

// Promote confirms a resident with a seat from the hub's reserve. From is
// the id of the waitlisted or recorded check-in it resolves, or
// PromoteReserve. A promotion, like any confirmation, is never revoked.
type Promote struct {
	Activity string `cbor:"1,keyasint" json:"activity"`
	Resident string `cbor:"2,keyasint" json:"resident"`
	From     string `cbor:"3,keyasint" json:"from"`
}

// AlarmAck acknowledges the current episode of an alarm, named by site,
// source (sensor or door) and alarm kind.
type AlarmAck struct {
	Site   string `cbor:"1,keyasint" json:"site"`
	Source string `cbor:"2,keyasint" json:"source"`
	Type   string `cbor:"3,keyasint" json:"kind"`
	Who    string `cbor:"4,keyasint" json:"who"`
	Note   string `cbor:"5,keyasint,omitempty" json:"note,omitempty"`
}

// AlarmClear clears an alarm as an operator's decision; a raise later in
// HLC order opens it again.
type AlarmClear AlarmAck

func (*ActivitySet) Kind() Kind { return KindActivitySet }
func (*NoticeSet) Kind() Kind   { return KindNoticeSet }
func (*ReportPatch) Kind() Kind { return KindReportPatch }
func (*Grant) Kind() Kind       { return KindGrant }
func (*Recall) Kind() Kind      { return KindRecall }
func (*Promote) Kind() Kind     { return KindPromote }
func (*AlarmAck) Kind() Kind    { return KindAlarmAck }
func (*AlarmClear) Kind() Kind  { return KindAlarmClear }

// Validate checks an activity definition.
func (b *ActivitySet) Validate() error {
	err := first(
		idField("id", b.ID),
		text("title", b.Title, 1, 120),
		oneOf("kind", b.Type, ActivityKinds, true),
		idField("site", b.Site),
		text("venue", b.Venue, 0, 120),
		text("description", b.Description, 0, 2000),
	)
	switch {
	case err != nil:
	case b.Start < 0:
		err = &FieldError{Field: "start", Msg: "must not be negative"}
	case b.End < 0 || b.End != 0 && b.End < b.Start:
		err = &FieldError{Field: "end", Msg: "must not be before start"}
	case b.Capacity > maxCapacity:
		err = &FieldError{Field: "capacity", Msg: fmt.Sprintf("must be at most %d", maxCapacity)}
	case b.CheckinOpens != nil && *b.CheckinOpens > MaxCheckinOpens:
		err = &FieldError{Field: "checkin_opens", Msg: fmt.Sprintf("must be 0 to %d minutes before start", MaxCheckinOpens)}
	}
	return err
}

// Validate checks a notice.
func (b *NoticeSet) Validate() error {
	if err := first(idField("id", b.ID), idField("site", b.Site)); err != nil {
		return err
	}
	if len(b.Buildings) > 256 {
		return &FieldError{Field: "buildings", Msg: "at most 256"}
	}
	for _, bu := range b.Buildings {
		if err := idField("buildings", bu); err != nil {
			return err
		}
	}
	if b.Expires < 0 {
		return &FieldError{Field: "expires", Msg: "must not be negative"}
	}
	return first(
		text("title", b.Title, 1, 120),
		text("body", b.Body, 0, 4000),
		oneOf("category", b.Category, NoticeCategories, true),
	)
}

// Validate checks a report patch; it must change something.
func (b *ReportPatch) Validate() error {
	err := first(
		refField("report", b.Report),
		oneOf("status", b.Status, ReportStatuses, false),
		text("note", b.Note, 0, 1000),
		text("assignee", b.Assignee, 0, 64),
		idField("who", b.Who),
	)
	if err == nil && b.Status == "" && b.Note == "" && b.Assignee == "" {
		err = &FieldError{Field: "status", Msg: "a patch needs a status, note or assignee"}
	}
	if err == nil && b.Internal && b.Note == "" {
		err = &FieldError{Field: "visibility", Msg: "only a note has a visibility"}
	}
	return err
}

// Validate checks a grant.
func (b *Grant) Validate() error {
	err := first(idField("activity", b.Activity), idField("kiosk", b.Kiosk))
	if err == nil && (b.Seats == 0 || b.Seats > maxCapacity) {
		err = &FieldError{Field: "seats", Msg: fmt.Sprintf("must be 1 to %d", maxCapacity)}
	}
	return err
}

// Validate checks a recall.
func (b *Recall) Validate() error {
	err := first(idField("activity", b.Activity), idField("kiosk", b.Kiosk))
	if err == nil && (b.Granted == 0 || b.Granted > maxCapacity) {
		err = &FieldError{Field: "granted", Msg: fmt.Sprintf("must be 1 to %d", maxCapacity)}
	}
	return err
}

// Validate checks a promotion.
func (b *Promote) Validate() error {
	err := first(idField("activity", b.Activity), idField("resident", b.Resident))
	if err == nil && b.From != PromoteReserve {
		if _, _, perr := ParseID(b.From); perr != nil {
			err = &FieldError{Field: "from", Msg: "must be a check-in event id or " + PromoteReserve}
		}
	}
	return err
}

// Validate checks an acknowledgement.
func (b *AlarmAck) Validate() error {
	return first(
		idField("site", b.Site),
		idField("source", b.Source),
		oneOf("kind", b.Type, AlarmKinds, true),
		idField("who", b.Who),
		text("note", b.Note, 0, 500),
	)
}

// Validate checks a clear.
func (b *AlarmClear) Validate() error { return (*AlarmAck)(b).Validate() }

func init() {
	register(KindActivitySet, "activity_set", func() Body { return new(ActivitySet) })
	register(KindNoticeSet, "notice_set", func() Body { return new(NoticeSet) })
	register(KindReportPatch, "report_patch", func() Body { return new(ReportPatch) })
	register(KindGrant, "grant", func() Body { return new(Grant) })
	register(KindRecall, "recall", func() Body { return new(Recall) })
	register(KindPromote, "promote", func() Body { return new(Promote) })
	register(KindAlarmAck, "alarm_ack", func() Body { return new(AlarmAck) })
	register(KindAlarmClear, "alarm_clear", func() Body { return new(AlarmClear) })
}
