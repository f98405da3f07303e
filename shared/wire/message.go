package wire

import (
	"errors"
	"fmt"
	"sync"

	"github.com/klauspost/compress/zstd"

	"linli/shared/event"
	"linli/shared/hlc"
)

// Up is what an edge publishes on its up topic: exactly one of Hello,
// Batch or DownAck.
type Up struct {
	Hello   *Hello   `cbor:"1,keyasint,omitempty"`
	Batch   *Batch   `cbor:"2,keyasint,omitempty"`
	DownAck *DownAck `cbor:"3,keyasint,omitempty"`
}

// DownAck reports the edge's downlink cursor: every change up to Cursor is
// applied. CatchUp asks the hub to send what follows it.
type DownAck struct {
	Cursor  uint64 `cbor:"1,keyasint"`
	CatchUp bool   `cbor:"2,keyasint,omitempty"`
}

// Hello opens every session: the edge says who it is and how far it got,
// and the hub answers with an Ack saying what it really has.
type Hello struct {
	Role       string        `cbor:"1,keyasint"`
	Version    string        `cbor:"2,keyasint,omitempty"`
	LastSeq    uint64        `cbor:"3,keyasint"`           // newest event written on the edge
	AckedSeq   uint64        `cbor:"4,keyasint"`           // the edge's idea of the hub's high-water mark
	DownCursor uint64        `cbor:"5,keyasint,omitempty"` // last downlink change applied
	Clock      hlc.Timestamp `cbor:"6,keyasint"`
	Pending    uint64        `cbor:"7,keyasint,omitempty"`
	Oldest     hlc.Timestamp `cbor:"8,keyasint,omitempty"` // HLC of the oldest unacked event
	// First is the oldest seq the edge still holds (LastSeq+1 when it
	// holds none); 0 from edges that do not say. Seqs from the hub's
	// acked+1 up to First-1 are gone for good: the hub records them as
	// lost instead of waiting for them.
	First uint64 `cbor:"9,keyasint,omitempty"`
	// CA lists the SHA-256 fingerprints of the site CAs the edge trusts,
	// so the hub can tell when every edge has taken a rotated CA.
	CA []string `cbor:"10,keyasint,omitempty"`
}

// Codec of a batch's events.
const (
	CodecCBOR = 0 // Events holds them as they are
	CodecZstd = 1 // Payload is zstd-compressed CBOR of the events array
)

// Batch carries a device's events covering the sequence range [From, To].
// A seq inside the range that no event carries does not exist (the edge
// dropped telemetry there), so the hub may count it as received.
type Batch struct {
	From    uint64        `cbor:"1,keyasint"`
	To      uint64        `cbor:"2,keyasint"`
	Codec   uint8         `cbor:"3,keyasint,omitempty"`
	Events  []event.Event `cbor:"4,keyasint,omitempty"`
	Payload []byte        `cbor:"5,keyasint,omitempty"`
	Clock   hlc.Timestamp `cbor:"6,keyasint,omitempty"`
	// Priority batches (alarms) travel outside the in-order stream; they
	// never cover seqs they do not carry.
	Priority bool `cbor:"7,keyasint,omitempty"`
}

// Ack is the hub's end-to-end answer: every seq up to Acked of this device
// is committed on the hub's disk. The hub signs it like the downlink.
type Ack struct {
	Acked uint64        `cbor:"1,keyasint"`
	Hello bool          `cbor:"2,keyasint,omitempty"` // answers a hello: resend from Acked+1
	Clock hlc.Timestamp `cbor:"3,keyasint,omitempty"`
	// DownHead is the head of the site's downlink log; an edge whose cursor
	// is behind asks for a catch-up.
	DownHead uint64 `cbor:"4,keyasint,omitempty"`
	// Device is the device acked: the hub signs acks, and an ack signed for
	// one device must not move another's cursor.
	Device string `cbor:"5,keyasint,omitempty"`
	// Horizon is the highest seq of this device that a completed, checked
	// backup of the hub covers. The edge keeps acked events above it
	// whatever its retention says, since a restore would need them. Absent
	// (nil): the hub takes no backups, and retention alone decides.
	Horizon *uint64 `cbor:"6,keyasint,omitempty"`
	// Base is the seq base of the key the ack answers: a device that
	// replaced another under the same id numbers above its predecessor,
	// and each ignores the other's acks.
	Base uint64 `cbor:"7,keyasint,omitempty"`
	// Identity, in an ack signed by the hub, says the device's key was
	// "replaced" or "revoked".
	Identity string `cbor:"8,keyasint,omitempty"`
}

// Status is the retained online/offline state of a device, also its last
// will.
type Status struct {
	Online  bool   `cbor:"1,keyasint"`
	Role    string `cbor:"2,keyasint,omitempty"`
	Version string `cbor:"3,keyasint,omitempty"`
	Time    int64  `cbor:"4,keyasint,omitempty"` // unix milliseconds
}

// Errors of batch validation.
var (
	ErrBadBatch = errors.New("bad batch")
)

var (
	zOnce sync.Once
	zEnc  *zstd.Encoder
	zDec  *zstd.Decoder
	zErr  error
)

func zstdCodecs() (*zstd.Encoder, *zstd.Decoder, error) {
	zOnce.Do(func() {
		// Fastest level: on these small, repetitive batches it reaches most
		// of the ratio of better levels at a fraction of the CPU of a Pi.
		zEnc, zErr = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest),
			zstd.WithEncoderConcurrency(1), zstd.WithZeroFrames(true))
		if zErr != nil {
			return
		}
		zDec, zErr = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0),
			zstd.WithDecoderMaxMemory(event.MaxMessage), zstd.WithDecoderMaxWindow(event.MaxMessage))
	})
	return zEnc, zDec, zErr
}

// NewBatch packs events (sorted by seq, Device left empty) covering
// [from, to], compressing them when that pays.
func NewBatch(from, to uint64, events []event.Event, compress bool, clock hlc.Timestamp) (*Batch, error) {
	b := &Batch{From: from, To: to, Clock: clock}
	if !compress || len(events) < 4 {
		b.Events = events
		return b, nil
	}
	raw, err := event.Marshal(events)
	if err != nil {
		return nil, fmt.Errorf("encode batch events: %w", err)
	}
	enc, _, err := zstdCodecs()
	if err != nil {
		return nil, fmt.Errorf("zstd: %w", err)
	}
	b.Codec = CodecZstd
	b.Payload = enc.EncodeAll(raw, make([]byte, 0, len(raw)/3))
	return b, nil
}

// BatchRawRoom is the room NewBatchRaw needs in its buffer before the
// events: it writes the batch's CBOR array head there, in place, instead of
// copying every event behind a new head.
const BatchRawRoom = 9

// NewBatchRaw is NewBatch for events already encoded: buf holds
// BatchRawRoom spare bytes and then the concatenation of n events'
// deterministic CBOR encodings with Device left empty, as the edge's outbox
// stores them. A compressed batch is then built without decoding and
// encoding every event again; its bytes are those NewBatch would give for
// the same events. It writes into buf's spare bytes and keeps no reference
// to buf, so the caller can reuse buf for the next batch.
func NewBatchRaw(from, to uint64, n int, buf []byte, compress bool, clock hlc.Timestamp) (*Batch, error) {
	if len(buf) < BatchRawRoom {
		return nil, fmt.Errorf("raw batch buffer of %d bytes: want %d spare bytes before the events", len(buf), BatchRawRoom)
	}
	var head [BatchRawRoom]byte
	h := appendArrayHeader(head[:0], n)
	arr := buf[BatchRawRoom-len(h):]
	copy(arr, h)
	if !compress || n < 4 {
		var events []event.Event
		if err := event.Unmarshal(arr, &events); err != nil {
			return nil, fmt.Errorf("decode stored events: %w", err)
		}
		if len(events) != n {
			return nil, fmt.Errorf("decode stored events: got %d, want %d", len(events), n)
		}
		return NewBatch(from, to, events, compress, clock)
	}
	enc, _, err := zstdCodecs()
	if err != nil {
		return nil, fmt.Errorf("zstd: %w", err)
	}
	return &Batch{From: from, To: to, Clock: clock, Codec: CodecZstd,
		Payload: enc.EncodeAll(arr, make([]byte, 0, len(arr)/3))}, nil
}

// appendArrayHeader appends the head of a CBOR array of n items in its
// shortest form, as deterministic encoding writes it.
func appendArrayHeader(b []byte, n int) []byte {
	const array = 4 << 5
	switch {
	case n < 24:
		return append(b, array|byte(n))
	case n <= 0xff:
		return append(b, array|24, byte(n))
	case n <= 0xffff:
		return append(b, array|25, byte(n>>8), byte(n))
	case uint64(n) <= 0xffffffff:
		return append(b, array|26, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(b, array|27, byte(uint64(n)>>56), byte(uint64(n)>>48), byte(uint64(n)>>40), byte(uint64(n)>>32),
		byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

// Open returns the batch's events after checking the batch's shape: the
// range is sane, every event lies inside it, seqs strictly increase and no
// event names another device. Event bodies are not validated here.
func (b *Batch) Open(device string) ([]event.Event, error) {
	evs, _, err := b.open(device, false)
	return evs, err
}

// OpenRaw is Open that also returns each event's encoding as it came, with
// its device left out as stores keep it (nil where it must be encoded
// again: an uncompressed batch, or an event that named its device), so a
// hub stores events without encoding them a second time.
func (b *Batch) OpenRaw(device string) ([]event.Event, [][]byte, error) {
	return b.open(device, true)
}

func (b *Batch) open(device string, withRaw bool) ([]event.Event, [][]byte, error) {
	if b.From == 0 || b.To < b.From {
		return nil, nil, fmt.Errorf("%w: range [%d, %d]", ErrBadBatch, b.From, b.To)
	}
	events := b.Events
	var raws [][]byte
	switch b.Codec {
	case CodecCBOR:
	case CodecZstd:
		if len(b.Events) != 0 {
			return nil, nil, fmt.Errorf("%w: both events and payload", ErrBadBatch)
		}
		_, dec, err := zstdCodecs()
		if err != nil {
			return nil, nil, fmt.Errorf("zstd: %w", err)
		}
		data, err := dec.DecodeAll(b.Payload, nil)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: decompress: %v", ErrBadBatch, err)
		}
		if withRaw {
			events, raws, err = event.UnmarshalArray(data)
		} else {
			err = event.Unmarshal(data, &events)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%w: decode events: %v", ErrBadBatch, err)
		}
	default:
		return nil, nil, fmt.Errorf("%w: unknown codec %d", ErrBadBatch, b.Codec)
	}
	var encoded [][]byte
	if withRaw {
		encoded = make([][]byte, len(events))
	}
	var prev uint64
	for i := range events {
		e := &events[i]
		if e.Device != "" && e.Device != device {
			return nil, nil, fmt.Errorf("%w: event of device %q in a batch of %q", ErrBadBatch, e.Device, device)
		}
		if e.Device == "" && raws != nil {
			encoded[i] = raws[i]
		}
		e.Device = device
		if e.Seq < b.From || e.Seq > b.To || e.Seq <= prev {
			return nil, nil, fmt.Errorf("%w: seq %d out of order or outside [%d, %d]", ErrBadBatch, e.Seq, b.From, b.To)
		}
		prev = e.Seq
	}
	if b.Priority && uint64(len(events)) != b.To-b.From+1 {
		return nil, nil, fmt.Errorf("%w: priority batch must carry every seq it covers", ErrBadBatch)
	}
	return events, encoded, nil
}

// Encode marshals any wire message.
func Encode(v any) ([]byte, error) { return event.Marshal(v) }

// DecodeUp decodes an up message, requiring exactly one of hello or batch.
func DecodeUp(data []byte) (Up, error) {
	var u Up
	if err := event.Unmarshal(data, &u); err != nil {
		return Up{}, fmt.Errorf("decode up message: %w", err)
	}
	n := 0
	for _, set := range []bool{u.Hello != nil, u.Batch != nil, u.DownAck != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		return Up{}, errors.New("decode up message: want exactly one of hello, batch and down ack")
	}
	return u, nil
}

// DecodeAck decodes an ack.
func DecodeAck(data []byte) (Ack, error) {
	var a Ack
	if err := event.Unmarshal(data, &a); err != nil {
		return Ack{}, fmt.Errorf("decode ack: %w", err)
	}
	return a, nil
}

// DecodeStatus decodes a status message.
func DecodeStatus(data []byte) (Status, error) {
	var s Status
	if err := event.Unmarshal(data, &s); err != nil {
		return Status{}, fmt.Errorf("decode status: %w", err)
	}
	return s, nil
}
