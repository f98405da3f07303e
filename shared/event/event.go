// Package event defines the immutable facts edges record: the envelope,
// the kinds and their bodies, their CBOR encoding and their validation.
package event

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/fxamacker/cbor/v2"

	"linli/shared/hlc"
)

// Kind names what an event records. The numbers are on the wire and in
// stores: never renumber, only append.
type Kind uint8

// The kinds of events.
const (
	KindCheckin Kind = 1 // a resident checks in or out of an activity
	KindReport  Kind = 2 // a neighbourhood report is filed
	KindVote    Kind = 3 // a "me too" on a report
	KindRating  Kind = 4 // a resident rates a report or activity
	KindAccess  Kind = 5 // a door decision or door state
	KindReading Kind = 6 // a sensor reading (telemetry)
	KindAlarm   Kind = 7 // a safety alarm raised or cleared at a gateway
	KindGap     Kind = 8 // telemetry the edge dropped to protect its disk
	// Kinds 9 to 63 are edge kinds yet to come; 64 and up are decisions the
	// hub records about its own state (operator writes, seat grants), which
	// never travel up from an edge.
	FirstHubKind Kind = 64
)

// kindNames is filled by register.
var kindNames = map[Kind]string{}

// String is the kind's name as used in JSON and logs.
func (k Kind) String() string {
	if n, ok := kindNames[k]; ok {
		return n
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// ParseKind is the inverse of Kind.String.
func ParseKind(s string) (Kind, bool) {
	for k, n := range kindNames {
		if n == s {
			return k, true
		}
	}
	return 0, false
}

// MarshalJSON renders the kind by name.
func (k Kind) MarshalJSON() ([]byte, error) { return json.Marshal(k.String()) }

// Event is the envelope of every fact an edge records. Device and Seq
// identify it globally; the hub deduplicates on them.
type Event struct {
	Device string          `cbor:"1,keyasint,omitempty"` // omitted inside a batch, which names the device once
	Seq    uint64          `cbor:"2,keyasint"`
	HLC    hlc.Timestamp   `cbor:"3,keyasint"`
	Kind   Kind            `cbor:"4,keyasint"`
	Body   cbor.RawMessage `cbor:"5,keyasint"`

	// decoded caches Decode's result, so the hub's validation, merge and
	// hooks parse a body once. Copies of the event share it; SetBody
	// drops it. Not encoded.
	decoded Body
}

// ID is the event's global id: device, a dot, and the sequence number.
// Reports are known by the id of the event that filed them.
func (e *Event) ID() string { return FormatID(e.Device, e.Seq) }

// FormatID joins a device id and a sequence number into an event id.
func FormatID(device string, seq uint64) string {
	return device + "." + strconv.FormatUint(seq, 10)
}

// ParseID splits an event id into device and sequence number.
func ParseID(id string) (device string, seq uint64, err error) {
	i := strings.LastIndexByte(id, '.')
	if i <= 0 {
		return "", 0, fmt.Errorf("event id %q: want DEVICE.SEQ", id)
	}
	seq, err = strconv.ParseUint(id[i+1:], 10, 64)
	if err != nil || seq == 0 {
		return "", 0, fmt.Errorf("event id %q: bad sequence number", id)
	}
	if err := ValidID(id[:i]); err != nil {
		return "", 0, fmt.Errorf("event id %q: %w", id, err)
	}
	return id[:i], seq, nil
}

// NewEvent encodes body into an event of the body's kind.
func NewEvent(device string, seq uint64, ts hlc.Timestamp, body Body) (Event, error) {
	raw, err := Marshal(body)
	if err != nil {
		return Event{}, fmt.Errorf("encode %s body: %w", body.Kind(), err)
	}
	return Event{Device: device, Seq: seq, HLC: ts, Kind: body.Kind(), Body: raw}, nil
}

// Decode decodes and validates the event's body, once: the result is kept
// with the event (and its later copies). Not safe for concurrent use on
// one Event; bodies must be treated as read-only.
func (e *Event) Decode() (Body, error) {
	if e.decoded != nil {
		return e.decoded, nil
	}
	b, err := DecodeBody(e.Kind, e.Body)
	if err == nil {
		e.decoded = b
	}
	return b, err
}

// SetBody replaces the encoded body (an erasure) and forgets the decoded
// one.
func (e *Event) SetBody(raw cbor.RawMessage) {
	e.Body, e.decoded = raw, nil
}

// Validate checks the envelope and its body.
func (e *Event) Validate() error {
	if err := ValidID(e.Device); err != nil {
		return &FieldError{Field: "device", Msg: err.Error()}
	}
	if e.Seq == 0 {
		return &FieldError{Field: "seq", Msg: "must be at least 1"}
	}
	_, err := e.Decode()
	return err
}

// Encode marshals the whole envelope.
func (e *Event) Encode() ([]byte, error) { return Marshal(e) }

// DecodeEvent unmarshals an envelope; it does not validate the body.
func DecodeEvent(data []byte) (Event, error) {
	var e Event
	if err := Unmarshal(data, &e); err != nil {
		return Event{}, fmt.Errorf("decode event: %w", err)
	}
	return e, nil
}
