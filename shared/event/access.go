package event

import (
	"bytes"
	"fmt"
)

// KindAccessListSet is the hub decision that sets the access list of one
// building: which cards open which door. The latest by (HLC, device, seq)
// wins as a whole; the hub signs it and sends it down to the site's
// gateways (see shared/accesslist).
const KindAccessListSet Kind = 72

// Sizes and limits of an access list.
const (
	AccessKeySize = 32 // the site's HMAC key
	CardHashSize  = 16 // a card's keyed hash
	// MaxAccessDoors and MaxAccessCards bound one building's list: far above
	// any residential building, low enough that a list fits one downlink
	// message (50,000 hashes are 800 KB).
	MaxAccessDoors = 256
	MaxAccessCards = 50_000
)

// Reasons an access event may give for its result.
var AccessReasons = []string{
	"not_listed", // the card is not on the list for this door
	"no_list",    // the gateway has no access list for its building yet
	"stale_list", // the list is older than the limit: denied (fallback locked) or decided by the last list (fallback last)
	// Why a read is bad (result bad_read): not a card.
	"frame_length", "parity", "bad_bit",
}

// AccessDoor lists the cards (keyed hashes, sorted, unique) allowed at one
// door.
type AccessDoor struct {
	Door  string   `cbor:"1,keyasint" json:"door"`
	Cards [][]byte `cbor:"2,keyasint" json:"cards"`
}

// AccessListSet sets the access list of a building. Cards are never in
// clear: the hub hashes what the operator sends with the site's Key before
// recording it.
type AccessListSet struct {
	Site     string       `cbor:"1,keyasint" json:"site"`
	Building string       `cbor:"2,keyasint" json:"building"`
	Doors    []AccessDoor `cbor:"3,keyasint" json:"doors"` // sorted by door
	Key      []byte       `cbor:"4,keyasint" json:"-"`     // the site's HMAC key the cards are hashed with
	Who      string       `cbor:"5,keyasint" json:"who"`   // the operator
}

// Kind is KindAccessListSet.
func (*AccessListSet) Kind() Kind { return KindAccessListSet }

// Validate checks an access list: ids, the key's size, doors sorted and
// unique, each door's hashes of the right size, sorted and unique, and the
// limits. Sorted input keeps the list's encoding, and so its signature,
// a function of its contents.
func (b *AccessListSet) Validate() error {
	if err := first(idField("site", b.Site), idField("building", b.Building), idField("who", b.Who)); err != nil {
		return err
	}
	if len(b.Key) != AccessKeySize {
		return &FieldError{Field: "key", Msg: fmt.Sprintf("must be %d bytes", AccessKeySize)}
	}
	if len(b.Doors) > MaxAccessDoors {
		return &FieldError{Field: "doors", Msg: fmt.Sprintf("at most %d doors", MaxAccessDoors)}
	}
	cards := 0
	for i, d := range b.Doors {
		if err := idField("doors", d.Door); err != nil {
			return err
		}
		if i > 0 && b.Doors[i-1].Door >= d.Door {
			return &FieldError{Field: "doors", Msg: "doors must be sorted and unique"}
		}
		for j, c := range d.Cards {
			if len(c) != CardHashSize {
				return &FieldError{Field: "cards", Msg: fmt.Sprintf("door %s: a card hash must be %d bytes", d.Door, CardHashSize)}
			}
			if j > 0 && bytes.Compare(d.Cards[j-1], c) >= 0 {
				return &FieldError{Field: "cards", Msg: fmt.Sprintf("door %s: card hashes must be sorted and unique", d.Door)}
			}
		}
		cards += len(d.Cards)
	}
	if cards > MaxAccessCards {
		return &FieldError{Field: "cards", Msg: fmt.Sprintf("at most %d cards in one list", MaxAccessCards)}
	}
	return nil
}

func init() {
	register(KindAccessListSet, "access_list_set", func() Body { return new(AccessListSet) })
}
