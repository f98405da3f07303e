package event

import (
	"unicode/utf8"

	"github.com/fxamacker/cbor/v2"

	"linli/shared/hlc"
)

// decodeEnvelope decodes one event at the start of data without the
// reflecting decoder, for the form Linli's own encoder writes: a map with
// unsigned keys 1 to 5 in ascending order (any of them left out), the
// device a text string, seq, HLC and kind unsigned integers, the body
// any item of definite length without tags. It returns what follows the
// event, and ok false for anything else — a duplicate or unknown key, a
// tag, a float where an integer belongs, deeper nesting than it follows —
// which the caller then decodes with the reflecting decoder, so every
// input gets exactly that decoder's answer. A catch-up brings hundreds of
// thousands of events, and decoding their envelopes by reflection was
// about a twentieth of the hub's CPU.
//
// It is never laxer than decMode: what it takes, decMode takes with the
// same result (TestDecodeEnvelopeMatchesDecoder, FuzzDecodeEnvelope).
func decodeEnvelope(data []byte, e *Event) (rest []byte, ok bool) {
	major, n, p, ok := head(data)
	if !ok || major != 5 || n > 5 {
		return nil, false
	}
	var ev Event
	last := uint64(0)
	for range n {
		var key uint64
		if major, key, p, ok = head(p); !ok || major != 0 || key <= last || key > 5 {
			return nil, false
		}
		last = key
		switch key {
		case 1:
			var s uint64
			if major, s, p, ok = head(p); !ok || major != 3 || s > uint64(len(p)) || !utf8.Valid(p[:s]) {
				return nil, false
			}
			ev.Device, p = string(p[:s]), p[s:]
		case 2, 3, 4:
			var v uint64
			if major, v, p, ok = head(p); !ok || major != 0 {
				return nil, false
			}
			switch key {
			case 2:
				ev.Seq = v
			case 3:
				ev.HLC = hlc.Timestamp(v)
			case 4:
				if v > 255 {
					return nil, false
				}
				ev.Kind = Kind(v)
			}
		case 5:
			after, ok := skipItem(p, 1)
			if !ok {
				return nil, false
			}
			ev.Body = cbor.RawMessage(append([]byte(nil), p[:len(p)-len(after)]...))
			p = after
		}
	}
	*e = ev
	return p, true
}

// envelopeDepth is the deepest nesting decodeEnvelope follows in a body,
// well inside decMode's MaxNestedLevels; a deeper body goes to decMode.
const envelopeDepth = 8

// skipItem returns what follows the CBOR item at the start of data, at
// nesting depth depth; ok is false for any item it does not follow (see
// decodeEnvelope).
func skipItem(data []byte, depth int) (rest []byte, ok bool) {
	major, n, p, ok := head(data)
	if !ok {
		return nil, false
	}
	switch major {
	case 0, 1:
		return p, true
	case 2, 3:
		if n > uint64(len(p)) {
			return nil, false
		}
		return p[n:], true
	case 4, 5:
		if depth >= envelopeDepth || n > 1<<14 {
			return nil, false
		}
		items := n
		if major == 5 {
			items = 2 * n
		}
		for range items {
			if p, ok = skipItem(p, depth+1); !ok {
				return nil, false
			}
		}
		return p, true
	case 7:
		switch data[0] & 0x1f {
		case 20, 21, 22, 25, 26, 27: // false, true, null, floats
			return p, true
		}
	}
	return nil, false // tags, undefined, other simple values
}

// head reads a CBOR item head of definite length: its major type and its
// argument (the value, length or count), and what follows the head. For
// floats (major 7, additional information 25 to 27) the argument is the
// float's bits and the head spans the whole item.
func head(data []byte) (major byte, arg uint64, rest []byte, ok bool) {
	if len(data) == 0 {
		return 0, 0, nil, false
	}
	major, info := data[0]>>5, data[0]&0x1f
	switch {
	case info < 24:
		return major, uint64(info), data[1:], true
	case info <= 27:
		size := 1 << (info - 24)
		if len(data) < 1+size {
			return 0, 0, nil, false
		}
		for _, b := range data[1 : 1+size] {
			arg = arg<<8 | uint64(b)
		}
		if major == 7 && info == 24 {
			return 0, 0, nil, false // a simple value in two bytes
		}
		return major, arg, data[1+size:], true
	}
	return 0, 0, nil, false // indefinite length or reserved
}
