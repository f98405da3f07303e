// Package accesslist is the access list a hub sends a building's gateways: which cards open which door, as keyed hashes, never in clear.
//
// The hub keeps one HMAC key per site. A card's canonical credential (the
// Wiegand form "26:123:45678") is stored and compared only as
// HMAC-SHA256(key, credential) truncated to HashSize bytes; the gateway
// hashes what its reader reads with the same key and looks it up. Events
// name a card by its Pseudonym (a shorter prefix of the same hash), so the
// hub can match them with its lists without either side keeping the card.
//
// A list travels down as one entity of the site's downlink, in messages the
// hub signs and the gateway verifies (shared/identity): an edge that cannot
// verify a message never takes an access list from it. The gateway keeps
// the newest list by Issued and never goes back to an older one, so an old
// list replayed changes nothing.
//
// The keyed hash stops a stolen gateway disk from listing cards at a
// glance; it does not stop a determined search of the small Wiegand space
// (2^24 for 26-bit cards) by someone who also has the key. Card numbers are
// not secrets on the wire of a Wiegand reader either.
package accesslist

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"linli/shared/card"
	"linli/shared/event"
	"linli/shared/hlc"
)

// Sizes of keys and hashes.
const (
	// KeySize is the length of a site's HMAC key.
	KeySize = event.AccessKeySize
	// HashSize is the length of a card hash in a list: 128 bits keep
	// collisions out of reach for any number of cards a site has.
	HashSize = event.CardHashSize
	// pseudonymBytes is how much of the hash names a card in events.
	pseudonymBytes = 8
)

// PseudonymPrefix starts every card pseudonym, so a reader of events tells
// it from a clear credential at a glance.
const PseudonymPrefix = "h:"

// Canonical returns the canonical form of a card credential, so that a card
// typed by an operator and the same card read at a door hash alike. Only the
// Wiegand form "<format>:<facility>:<card>" is known; errors wrap
// card.ErrCredential.
func Canonical(credential string) (string, error) {
	c, err := card.Parse(credential)
	if err != nil {
		return "", err
	}
	return c.String(), nil
}

// Hash is the keyed hash of a canonical credential.
func Hash(key []byte, credential string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("linli/card/v1\x00"))
	m.Write([]byte(credential))
	return m.Sum(nil)[:HashSize]
}

// Pseudonym names a card in events: PseudonymPrefix and the first 8 bytes of
// its hash in hex. It is stable for as long as the site keeps its key.
func Pseudonym(hash []byte) string {
	return PseudonymPrefix + hex.EncodeToString(hash[:min(len(hash), pseudonymBytes)])
}

// ErrNoKey: a card in clear cannot be pseudonymised before the site's key
// has arrived with an access list.
var ErrNoKey = errors.New("no access list yet, so no key to pseudonymise cards with")

// ErrPseudonym: a value that starts like a pseudonym is not one.
var ErrPseudonym = errors.New("not a card pseudonym")

// ValidPseudonym reports whether s is a card pseudonym as Pseudonym makes
// it: PseudonymPrefix and 16 lowercase hex digits. Errors wrap ErrPseudonym.
func ValidPseudonym(s string) error {
	hexPart, ok := strings.CutPrefix(s, PseudonymPrefix)
	if !ok || len(hexPart) != 2*pseudonymBytes || strings.ToLower(hexPart) != hexPart {
		return fmt.Errorf("%w: %q (want %s and %d lowercase hex digits)", ErrPseudonym, s, PseudonymPrefix, 2*pseudonymBytes)
	}
	if _, err := hex.DecodeString(hexPart); err != nil {
		return fmt.Errorf("%w: %q (want %s and %d lowercase hex digits)", ErrPseudonym, s, PseudonymPrefix, 2*pseudonymBytes)
	}
	return nil
}

// PseudonymFor names a credential that enters an edge by any path other
// than its own reader (a driver or a script posting an access event) the
// way events name cards, so no card is ever stored or sent in clear:
//
//   - a pseudonym (PseudonymPrefix…) is checked and kept as it is;
//   - a Wiegand card ("26:0123:45678") is hashed in its canonical form, so
//     the same card gets the same pseudonym as when it is read at a door;
//   - any other card number ("C42") is hashed as given.
//
// Without the site's key (no list yet) a clear credential gets ErrNoKey.
// A credential shaped like a Wiegand card whose numbers do not fit gets an
// error wrapping card.ErrCredential, one with characters outside
// letters, digits and '-', '_', '.', ':' an error naming them.
func PseudonymFor(key []byte, credential string) (string, error) {
	if strings.HasPrefix(credential, PseudonymPrefix) {
		if err := ValidPseudonym(credential); err != nil {
			return "", err
		}
		return credential, nil
	}
	if err := event.ValidRef(credential); err != nil {
		return "", err
	}
	canon := credential
	if wiegandShaped(credential) {
		c, err := Canonical(credential)
		if err != nil {
			return "", err
		}
		canon = c
	}
	if len(key) == 0 {
		return "", ErrNoKey
	}
	return Pseudonym(Hash(key, canon)), nil
}

// wiegandShaped reports whether s is three decimal numbers joined by ':',
// the shape of a Wiegand card whatever its numbers.
func wiegandShaped(s string) bool {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return false
	}
	for _, p := range parts {
		if p == "" || strings.TrimLeft(p, "0123456789") != "" {
			return false
		}
	}
	return true
}

// Door is one door of a list with the hashes of the cards that open it,
// sorted and unique.
type Door struct {
	Name  string   `cbor:"1,keyasint" json:"door"`
	Cards [][]byte `cbor:"2,keyasint" json:"-"`
}

// List is an access list as the hub sends it down (the body of a
// wire.EntityAccessList change, whose id is ID(site, building)).
type List struct {
	Site     string `cbor:"1,keyasint"`
	Building string `cbor:"2,keyasint"`
	// Issued orders lists of one building: a gateway never replaces a list
	// with one issued earlier, so an old list replayed changes nothing. Its
	// wall time is when the operator set the list.
	Issued hlc.Timestamp `cbor:"3,keyasint"`
	Key    []byte        `cbor:"4,keyasint"` // the site's HMAC key
	Doors  []Door        `cbor:"5,keyasint"` // sorted by name
}

// Validate checks the list's shape with the same limits as the hub's
// decision event.
func (l *List) Validate() error {
	set := event.AccessListSet{Site: l.Site, Building: l.Building, Key: l.Key, Who: "hub"}
	for _, d := range l.Doors {
		set.Doors = append(set.Doors, event.AccessDoor{Door: d.Name, Cards: d.Cards})
	}
	if err := set.Validate(); err != nil {
		return err
	}
	if l.Issued == 0 {
		return &event.FieldError{Field: "issued", Msg: "is required"}
	}
	return nil
}

// Allows reports whether the card with hash h may open door.
func (l *List) Allows(door string, h []byte) bool {
	i, ok := slices.BinarySearchFunc(l.Doors, door, func(d Door, name string) int { return cmpString(d.Name, name) })
	if !ok {
		return false
	}
	_, found := slices.BinarySearchFunc(l.Doors[i].Cards, h, bytes.Compare)
	return found
}

// Cards counts the cards of each door.
func (l *List) Cards() map[string]int {
	out := make(map[string]int, len(l.Doors))
	for _, d := range l.Doors {
		out[d.Name] = len(d.Cards)
	}
	return out
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// ID is the downlink entity id of a building's list.
func ID(site, building string) string { return site + ":" + building }

// Decode decodes and validates a list from a downlink change body.
func Decode(body []byte) (List, error) {
	var l List
	if err := event.UnmarshalOwn(body, &l); err != nil {
		return List{}, fmt.Errorf("decode access list: %w", err)
	}
	if err := l.Validate(); err != nil {
		return List{}, fmt.Errorf("access list %s: %w", ID(l.Site, l.Building), err)
	}
	return l, nil
}
