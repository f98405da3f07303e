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

var (
	encMode cbor.EncMode
	decMode cbor.DecMode
)

func init() {
	// Core deterministic encoding: the same value always gives the same bytes,
	// which the merge's byte-identical state and signatures rely on.
	em, err := cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		panic(fmt.Sprintf("cbor enc mode: %v", err))
	}
	encMode = em
	dm, err := cbor.DecOptions{
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		MaxNestedLevels:  16,
		MaxArrayElements: 1 << 17,
		MaxMapPairs:      1 << 14,
		IndefLength:      cbor.IndefLengthForbidden,
		TagsMd:           cbor.TagsForbidden,
		UTF8:             cbor.UTF8RejectInvalid,
	}.DecMode()
	if err != nil {
		panic(fmt.Sprintf("cbor dec mode: %v", err))
	}
	decMode = dm
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
