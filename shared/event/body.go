package event

import (
	"fmt"
	"math"
	"slices"
	"unicode"
	"unicode/utf8"

	"github.com/fxamacker/cbor/v2"
)

// Body is the kind-specific content of an event.
type Body interface {
	Kind() Kind
	// Validate returns a *FieldError naming the first bad field, or nil.
	Validate() error
}

// Report categories, check-in actions and outcomes, access results and
// reading kinds: the closed vocabularies of the contract.
var (
	Categories     = []string{"fire_safety", "public_safety", "facilities", "sanitation", "noise", "elevator", "other"}
	CheckinActions = []string{"in", "out"}
	AccessResults  = []string{"granted", "denied", "forced", "held_open", "open", "close", "bad_read"}
	ReadingKinds   = []string{"smoke", "temperature", "humidity", "water"}
	AlarmKinds     = []string{"smoke", "heat", "water", "forced", "held_open"}
)

// Check-in outcomes the kiosk answers with.
const (
	StatusConfirmed  = "confirmed"
	StatusWaitlisted = "waitlisted"
	StatusRecorded   = "recorded"
)

// Checkin is a resident checking in to or out of an activity. Status is the
// answer the kiosk gave at once from its share of seats; the hub never
// revokes a confirmation.
type Checkin struct {
	Resident string `cbor:"1,keyasint" json:"resident"`
	Activity string `cbor:"2,keyasint" json:"activity"`
	Action   string `cbor:"3,keyasint" json:"action"`
	Status   string `cbor:"4,keyasint,omitempty" json:"status,omitempty"`
	// Act is what the kiosk took an "in" to be by the activity's window:
	// ActSignup or ActAttendance; empty when it did not know the activity
	// (the hub then judges by the event's time).
	Act string `cbor:"5,keyasint,omitempty" json:"act,omitempty"`
}

// Report is a neighbourhood problem filed at a kiosk; its id is the id of
// the event that carries it. An empty Resident files it anonymously.
type Report struct {
	Category    string `cbor:"1,keyasint" json:"category"`
	Title       string `cbor:"2,keyasint" json:"title"`
	Description string `cbor:"3,keyasint,omitempty" json:"description,omitempty"`
	Building    string `cbor:"4,keyasint" json:"building"`
	Unit        string `cbor:"5,keyasint,omitempty" json:"unit,omitempty"`
	Resident    string `cbor:"6,keyasint,omitempty" json:"resident,omitempty"`
	// Location is where the problem is, when the client knows it (an
	// Open311 app's lat/long); a located report needs no building.
	Location *GeoPoint `cbor:"7,keyasint,omitempty" json:"location,omitempty"`
	// Number is the short number residents read out and note down
	// (B1-0007): the filing kiosk's code and its own counter, so kiosks
	// assign numbers offline without meeting each other's. Empty for
	// reports filed elsewhere; the id stays the report's key.
	Number string `cbor:"8,keyasint,omitempty" json:"number,omitempty"`
}

// GeoPoint is a WGS 84 position in decimal degrees.
type GeoPoint struct {
	Lat  float64 `cbor:"1,keyasint" json:"lat"`
	Long float64 `cbor:"2,keyasint" json:"long"`
}

// Validate checks that p is a position on the globe.
func (p *GeoPoint) Validate() error {
	switch {
	case math.IsNaN(p.Lat) || p.Lat < -90 || p.Lat > 90:
		return &FieldError{Field: "lat", Msg: "must be a latitude from -90 to 90"}
	case math.IsNaN(p.Long) || p.Long < -180 || p.Long > 180:
		return &FieldError{Field: "long", Msg: "must be a longitude from -180 to 180"}
	}
	return nil
}

// Vote is a resident's "me too" on a report.
type Vote struct {
	Report   string `cbor:"1,keyasint" json:"report"`
	Resident string `cbor:"2,keyasint" json:"resident"`
}

// Rating scores a resolved report or an attended activity.
type Rating struct {
	Resident string `cbor:"1,keyasint" json:"resident"`
	Target   string `cbor:"2,keyasint" json:"target"`
	Score    int    `cbor:"3,keyasint" json:"score"`
	Comment  string `cbor:"4,keyasint,omitempty" json:"comment,omitempty"`
}

// Access is a door decision (granted, denied, or bad_read for a frame that
// is not a card) or a door state change (open, close, held_open, forced)
// at a gateway. A gateway names the card by its keyed pseudonym (see
// shared/accesslist), never in clear; Reason says why (AccessReasons).
type Access struct {
	Door       string `cbor:"1,keyasint" json:"door"`
	Credential string `cbor:"2,keyasint,omitempty" json:"credential,omitempty"`
	Result     string `cbor:"3,keyasint" json:"result"`
	Building   string `cbor:"4,keyasint,omitempty" json:"building,omitempty"`
	Reason     string `cbor:"5,keyasint,omitempty" json:"reason,omitempty"`
	// Place is where the door is in words people use, on the alarms
	// (forced, held_open) only: they open an alarm that shows it.
	Place string `cbor:"6,keyasint,omitempty" json:"place,omitempty"`
}

// Reading is one sample of a sensor. Smoke and water are 0 or 1.
type Reading struct {
	Sensor   string  `cbor:"1,keyasint" json:"sensor"`
	Type     string  `cbor:"2,keyasint" json:"kind"`
	Value    float64 `cbor:"3,keyasint" json:"value"`
	Building string  `cbor:"4,keyasint,omitempty" json:"building,omitempty"`
}

// Alarm is a safety alarm raised (Active) or cleared at a gateway. Alarms
// travel ahead of any backlog.
type Alarm struct {
	Sensor   string  `cbor:"1,keyasint" json:"sensor"`
	Type     string  `cbor:"2,keyasint" json:"kind"`
	Active   bool    `cbor:"3,keyasint" json:"active"`
	Building string  `cbor:"4,keyasint,omitempty" json:"building,omitempty"`
	Value    float64 `cbor:"5,keyasint,omitempty" json:"value,omitempty"`
	// Place is where the source is, in words people use ("3号楼 1单元
	// 楼道烟感"), from the gateway's config.
	Place string `cbor:"6,keyasint,omitempty" json:"place,omitempty"`
}

// Gap records telemetry an edge dropped (never governance records) so the
// hub knows what is missing and why.
type Gap struct {
	Dropped  uint64 `cbor:"1,keyasint" json:"dropped"`
	FirstSeq uint64 `cbor:"2,keyasint" json:"first_seq"`
	LastSeq  uint64 `cbor:"3,keyasint" json:"last_seq"`
	Reason   string `cbor:"4,keyasint" json:"reason"`
}

func (*Checkin) Kind() Kind { return KindCheckin }
func (*Report) Kind() Kind  { return KindReport }
func (*Vote) Kind() Kind    { return KindVote }
func (*Rating) Kind() Kind  { return KindRating }
func (*Access) Kind() Kind  { return KindAccess }
func (*Reading) Kind() Kind { return KindReading }
func (*Alarm) Kind() Kind   { return KindAlarm }
func (*Gap) Kind() Kind     { return KindGap }

// Validate checks a check-in.
func (b *Checkin) Validate() error {
	return first(
		idField("resident", b.Resident),
		idField("activity", b.Activity),
		oneOf("action", b.Action, CheckinActions, true),
		oneOf("status", b.Status, []string{StatusConfirmed, StatusWaitlisted, StatusRecorded}, false),
		oneOf("act", b.Act, CheckinActs, false),
	)
}

// Validate checks a report.
func (b *Report) Validate() error {
	return first(
		oneOf("category", b.Category, Categories, true),
		text("title", b.Title, 1, 120),
		text("description", b.Description, 0, 2000),
		b.validPlace(),
		optional(b.Unit, func() error { return idField("unit", b.Unit) }),
		optional(b.Resident, func() error { return idField("resident", b.Resident) }),
		optional(b.Number, func() error { return numberField("number", b.Number) }),
	)
}

// validPlace asks for a building, or a location instead of one.
func (b *Report) validPlace() error {
	if b.Location != nil {
		if err := b.Location.Validate(); err != nil {
			return err
		}
		if b.Building == "" {
			return nil
		}
	}
	return idField("building", b.Building)
}

// Validate checks a vote.
func (b *Vote) Validate() error {
	return first(refField("report", b.Report), idField("resident", b.Resident))
}

// Validate checks a rating.
func (b *Rating) Validate() error {
	err := first(idField("resident", b.Resident), refField("target", b.Target))
	if err == nil && (b.Score < 1 || b.Score > 5) {
		err = &FieldError{Field: "score", Msg: "must be a whole number from 1 to 5"}
	}
	return first(err, text("comment", b.Comment, 0, 500))
}

// Validate checks an access event.
func (b *Access) Validate() error {
	return first(
		idField("door", b.Door),
		optional(b.Credential, func() error { return refField("credential", b.Credential) }),
		oneOf("result", b.Result, AccessResults, true),
		optional(b.Building, func() error { return idField("building", b.Building) }),
		oneOf("reason", b.Reason, AccessReasons, false),
		text("place", b.Place, 0, 100),
	)
}

// Validate checks a reading, including physical plausibility.
func (b *Reading) Validate() error {
	if err := first(idField("sensor", b.Sensor), oneOf("kind", b.Type, ReadingKinds, true),
		optional(b.Building, func() error { return idField("building", b.Building) })); err != nil {
		return err
	}
	v := b.Value
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return &FieldError{Field: "value", Msg: "must be a finite number"}
	case b.Type == "temperature" && (v < -60 || v > 200):
		return &FieldError{Field: "value", Msg: "temperature must be -60 to 200 °C"}
	case b.Type == "humidity" && (v < 0 || v > 100):
		return &FieldError{Field: "value", Msg: "humidity must be 0 to 100 %"}
	case (b.Type == "smoke" || b.Type == "water") && v != 0 && v != 1:
		return &FieldError{Field: "value", Msg: b.Type + " must be 0 or 1 (or false/true)"}
	}
	return nil
}

// Validate checks an alarm.
func (b *Alarm) Validate() error {
	return first(idField("sensor", b.Sensor), oneOf("kind", b.Type, AlarmKinds, true),
		optional(b.Building, func() error { return idField("building", b.Building) }),
		text("place", b.Place, 0, 100))
}

// Validate checks a gap record.
func (b *Gap) Validate() error {
	if b.Dropped == 0 || b.FirstSeq == 0 || b.LastSeq < b.FirstSeq {
		return &FieldError{Field: "dropped", Msg: "gap must name a non-empty seq range"}
	}
	return text("reason", b.Reason, 1, 200)
}

// NewBody returns an empty body of kind k.
func NewBody(k Kind) (Body, error) {
	if f, ok := factories[k]; ok {
		return f(), nil
	}
	return nil, &FieldError{Field: "kind", Msg: fmt.Sprintf("unknown event kind %d", k)}
}

// factories makes empty bodies by kind; register adds to it, so each file
// of kinds registers its own.
var factories = map[Kind]func() Body{}

func register(k Kind, name string, f func() Body) {
	if _, dup := factories[k]; dup {
		panic(fmt.Sprintf("event kind %d registered twice", k))
	}
	factories[k] = f
	kindNames[k] = name
}

func init() {
	register(KindCheckin, "checkin", func() Body { return new(Checkin) })
	register(KindReport, "report", func() Body { return new(Report) })
	register(KindVote, "vote", func() Body { return new(Vote) })
	register(KindRating, "rating", func() Body { return new(Rating) })
	register(KindAccess, "access", func() Body { return new(Access) })
	register(KindReading, "reading", func() Body { return new(Reading) })
	register(KindAlarm, "alarm", func() Body { return new(Alarm) })
	register(KindGap, "gap", func() Body { return new(Gap) })
}

// DecodeBody decodes and validates the CBOR body of an event of kind k.
func DecodeBody(k Kind, raw cbor.RawMessage) (Body, error) {
	b, err := NewBody(k)
	if err != nil {
		return nil, err
	}
	if err := Unmarshal(raw, b); err != nil {
		return nil, &FieldError{Field: "body", Msg: "bad " + k.String() + " body: " + err.Error()}
	}
	if err := b.Validate(); err != nil {
		return nil, err
	}
	return b, nil
}

// FieldError names the field that made input invalid; the HTTP layers turn
// it into 400 {"error","field"}.
type FieldError struct {
	Field string
	Msg   string
	// Code is the kind of fault in a word a client can key a message
	// by: CodeRequired, CodeTooLong, CodeTooShort, CodeNotAllowed; empty
	// for any other (CodeInvalid).
	Code string
}

// Codes of a FieldError, also answered by the HTTP APIs as "code".
const (
	CodeInvalid    = "invalid"
	CodeRequired   = "required"
	CodeTooLong    = "too_long"
	CodeTooShort   = "too_short"
	CodeNotAllowed = "not_allowed" // not one of a closed list
)

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// ValidID reports whether s can be an id of a device, site, resident,
// activity, building, unit, door or sensor: 1 to 64 letters, digits, '-' or
// '_', starting with a letter or digit. The limits keep ids safe inside MQTT
// topics, Badger keys and URLs.
func ValidID(s string) error {
	if s == "" {
		return fmt.Errorf("is required")
	}
	if len(s) > 64 {
		return fmt.Errorf("is longer than 64 characters")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '-' && c != '_') {
			return fmt.Errorf("%q: only letters, digits, '-' and '_' are allowed, starting with a letter or digit", s)
		}
	}
	return nil
}

// ValidRef reports whether s can be a reference to a report (DEVICE.SEQ)
// or a card credential: 1 to 96 letters, digits, '-', '_', '.' or ':'.
func ValidRef(s string) error { return validRef(s) }

// validRef is ValidID widened for references to reports (DEVICE.SEQ) and
// card credentials (FORMAT:FACILITY:CARD).
func validRef(s string) error {
	if s == "" {
		return fmt.Errorf("is required")
	}
	if len(s) > 96 {
		return fmt.Errorf("is longer than 96 characters")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':'
		if !ok {
			return fmt.Errorf("%q: only letters, digits and '-', '_', '.', ':' are allowed", s)
		}
	}
	return nil
}

func idField(name, v string) error {
	if err := ValidID(v); err != nil {
		fe := &FieldError{Field: name, Msg: err.Error()}
		if v == "" {
			fe.Code = CodeRequired
		}
		return fe
	}
	return nil
}

func refField(name, v string) error {
	if err := validRef(v); err != nil {
		return &FieldError{Field: name, Msg: err.Error()}
	}
	return nil
}

func oneOf(name, v string, allowed []string, required bool) error {
	if v == "" && !required {
		return nil
	}
	if !slices.Contains(allowed, v) {
		return &FieldError{Field: name, Msg: fmt.Sprintf("%q is not one of %v", v, allowed), Code: CodeNotAllowed}
	}
	return nil
}

// text checks length in characters and refuses control characters other
// than newline and tab, which have no place on a kiosk screen.
func text(name, v string, minLen, maxLen int) error {
	if !utf8.ValidString(v) {
		return &FieldError{Field: name, Msg: "is not valid UTF-8"}
	}
	n := utf8.RuneCountInString(v)
	if n < minLen {
		if minLen == 1 {
			return &FieldError{Field: name, Msg: "is required", Code: CodeRequired}
		}
		return &FieldError{Field: name, Msg: fmt.Sprintf("must be at least %d characters", minLen), Code: CodeTooShort}
	}
	if n > maxLen {
		return &FieldError{Field: name, Msg: fmt.Sprintf("must be at most %d characters", maxLen), Code: CodeTooLong}
	}
	for _, r := range v {
		if unicode.IsControl(r) && r != '\n' && r != '\t' {
			return &FieldError{Field: name, Msg: "contains control characters"}
		}
	}
	return nil
}

// ScreenText checks text residents type that kiosks and dashboards show
// to everyone (a report's title and description, a rating's comment):
// valid UTF-8, no control characters (C0, C1, DEL) but a line break where
// multiline, no line or paragraph separators, and no bidirectional
// controls, which can make text on a public screen read other than it is
// stored (U+202E shows the rest of a line backwards). The stricter rules
// apply where input enters an edge; stored events keep the wider text
// rules, so nothing already recorded is refused on its way to the hub.
func ScreenText(name, v string, multiline bool) error {
	if !utf8.ValidString(v) {
		return &FieldError{Field: name, Msg: "is not valid UTF-8"}
	}
	for _, r := range v {
		switch {
		case r == '\n' && multiline:
		case r == '\n', r == '\r', r == '\u2028', r == '\u2029':
			if multiline {
				return &FieldError{Field: name, Msg: fmt.Sprintf("contains a line break other than \\n (U+%04X)", r)}
			}
			return &FieldError{Field: name, Msg: "must be one line (no line breaks)"}
		case unicode.IsControl(r):
			return &FieldError{Field: name, Msg: fmt.Sprintf("contains a control character (U+%04X)", r)}
		case isBidiControl(r):
			return &FieldError{Field: name, Msg: fmt.Sprintf("contains a bidirectional control character (U+%04X), which can disguise text on public screens", r)}
		}
	}
	return nil
}

// isBidiControl reports the invisible characters that change the direction
// text is shown in: the marks ALM, LRM and RLM, the embeddings and
// overrides U+202A–U+202E and the isolates U+2066–U+2069.
func isBidiControl(r rune) bool {
	return r == '\u061C' || r == '\u200E' || r == '\u200F' || r >= '\u202A' && r <= '\u202E' || r >= '\u2066' && r <= '\u2069'
}

func optional(v string, check func() error) error {
	if v == "" {
		return nil
	}
	return check()
}

func first(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
