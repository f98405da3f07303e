package event

import (
	"errors"
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// MaxMessage bounds any CBOR document Linli decodes from outside (batches,
// downlink changes): larger input is refused before the decoder sees it.
const MaxMessage = 8 << 20

// ErrTooLarge is returned for input over MaxMessage.
var ErrTooLarge = errors.New("cbor message too large")

// maxItems bounds the elements of an array in outside input.
const maxItems = 1 << 17

var (
	encMode cbor.EncMode
	decMode cbor.DecMode
	ownMode cbor.DecMode // see UnmarshalOwn
)

func init() {
	// Core deterministic encoding: the same value always gives the same bytes,
	// which the merge's byte-identical state and signatures rely on.
	em, err := cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		panic(fmt.Sprintf("cbor enc mode: %v", err))
	}
	encMode = em
	opts := cbor.DecOptions{
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		MaxNestedLevels:  16,
		MaxArrayElements: maxItems,
		MaxMapPairs:      1 << 14,
		IndefLength:      cbor.IndefLengthForbidden,
		TagsMd:           cbor.TagsForbidden,
		UTF8:             cbor.UTF8RejectInvalid,
	}
	dm, err := opts.DecMode()
	if err != nil {
		panic(fmt.Sprintf("cbor dec mode: %v", err))
	}
	decMode = dm
	// Every element takes at least a byte, so within MaxMessage these
	// bound nothing the size does not.
	opts.MaxArrayElements, opts.MaxMapPairs = MaxMessage, MaxMessage/2
	if ownMode, err = opts.DecMode(); err != nil {
		panic(fmt.Sprintf("cbor dec mode: %v", err))
	}
}

// Marshal encodes v as deterministic CBOR.
func Marshal(v any) ([]byte, error) { return encMode.Marshal(v) }

// Unmarshal decodes CBOR from outside into v with Linli's size, depth and
// strictness limits.
func Unmarshal(data []byte, v any) error {
	if len(data) > MaxMessage {
		return fmt.Errorf("%w: %d bytes", ErrTooLarge, len(data))
	}
	return decMode.Unmarshal(data, v)
}

// UnmarshalOwn decodes CBOR that Linli made itself: what its stores hold,
// and the hub's downlink messages and the views in them (signed by the hub
// for an enrolled edge). Their only bound is MaxMessage. The element
// limits of Unmarshal keep an edge's batch from swelling in the hub's
// memory, but the hub's own views outgrow them: an activity's waitlist
// of more than 131,072 residents was a downlink message every edge of the
// site refused, and a change the hub could not read back at its next
// start.
func UnmarshalOwn(data []byte, v any) error {
	if len(data) > MaxMessage {
		return fmt.Errorf("%w: %d bytes", ErrTooLarge, len(data))
	}
	return ownMode.Unmarshal(data, v)
}

// UnmarshalArray decodes a CBOR array of events, returning each event's
// own encoding alongside (sub-slices of data, not copies) for callers that
// store events as they came.
func UnmarshalArray(data []byte) ([]Event, [][]byte, error) {
	if len(data) > MaxMessage {
		return nil, nil, fmt.Errorf("%w: %d bytes", ErrTooLarge, len(data))
	}
	n, rest, err := arrayHead(data)
	if err != nil {
		return nil, nil, err
	}
	if n > maxItems {
		return nil, nil, fmt.Errorf("cbor array of %d items: too many", n)
	}
	evs := make([]Event, n)
	raws := make([][]byte, n)
	for i := range evs {
		left, ok := decodeEnvelope(rest, &evs[i])
		if !ok {
			var err error
			if left, err = decMode.UnmarshalFirst(rest, &evs[i]); err != nil {
				return nil, nil, fmt.Errorf("event %d: %w", i, err)
			}
		}
		raws[i] = rest[:len(rest)-len(left)]
		rest = left
	}
	if len(rest) != 0 {
		return nil, nil, errors.New("extra data after the events array")
	}
	return evs, raws, nil
}

// IsArray reports whether data starts a CBOR array (major type 4), which
// tells a value stored as an array from one stored as a map or struct.
func IsArray(data []byte) bool { return len(data) > 0 && data[0]>>5 == 4 }

// arrayHead reads the head of a definite-length CBOR array.
func arrayHead(data []byte) (n uint64, rest []byte, err error) {
	if !IsArray(data) {
		return 0, nil, errors.New("not a cbor array")
	}
	info := data[0] & 0x1f
	switch {
	case info < 24:
		return uint64(info), data[1:], nil
	case info >= 24 && info <= 27:
		size := 1 << (info - 24)
		if len(data) < 1+size {
			return 0, nil, errors.New("truncated cbor array head")
		}
		for _, b := range data[1 : 1+size] {
			n = n<<8 | uint64(b)
		}
		return n, data[1+size:], nil
	}
	return 0, nil, errors.New("indefinite or malformed cbor array head")
}

// AppendArray appends a CBOR array of items, each already encoded, with
// the shortest head, as deterministic encoding writes it.
func AppendArray(b []byte, items [][]byte) []byte {
	const array = 4 << 5
	n := uint64(len(items))
	switch {
	case n < 24:
		b = append(b, array|byte(n))
	case n <= 0xff:
		b = append(b, array|24, byte(n))
	case n <= 0xffff:
		b = append(b, array|25, byte(n>>8), byte(n))
	case n <= 0xffffffff:
		b = append(b, array|26, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	default:
		b = append(b, array|27, byte(n>>56), byte(n>>48), byte(n>>40), byte(n>>32), byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	for _, it := range items {
		b = append(b, it...)
	}
	return b
}
