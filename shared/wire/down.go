package wire

import (
	"errors"
	"fmt"

	"github.com/fxamacker/cbor/v2"

	"linli/shared/event"
	"linli/shared/hlc"
)

// Entity kinds carried down to edges. Each change in the hub's log is a
// full snapshot of one entity, so applying the newest change of every
// entity gives the hub's state, whatever was missed in between; live
// messages may carry a change as a delta from the entity's previous
// version instead (Change.Delta).
const (
	EntityNotice     = "notice"
	EntityActivity   = "activity"
	EntityReport     = "report"
	EntityAlarm      = "alarm"
	EntityAccessList = "access"
	EntityResident   = "resident" // erasure of a resident's records
	EntityTrust      = "trust"    // a new site CA, cross-signed by the one edges pin (Trust)
)

// TrustSiteCA is the id of the one trust change: the site CA a rotation
// introduces.
const TrustSiteCA = "site-ca"

// Trust is the body of a trust change: the new site CA and its
// cross-certificate, the new CA's name and key certified by the CA edges
// already pin. An edge trusts the new CA only when the cross-certificate
// verifies against a CA it trusts (and the message is the hub's).
type Trust struct {
	CA    []byte `cbor:"1,keyasint"` // DER of the new CA's own certificate
	Cross []byte `cbor:"2,keyasint"` // DER of its certificate issued by the previous CA
}

// Change is one entry of a site's downlink change log.
type Change struct {
	Seq     uint64          `cbor:"1,keyasint"`
	Entity  string          `cbor:"2,keyasint"`
	ID      string          `cbor:"3,keyasint"`
	Device  string          `cbor:"4,keyasint,omitempty"` // only this device applies it; empty: all of the site
	HLC     hlc.Timestamp   `cbor:"5,keyasint"`
	Body    cbor.RawMessage `cbor:"6,keyasint,omitempty"`
	Deleted bool            `cbor:"7,keyasint,omitempty"`
	// Role: only devices of this role apply it; empty: every role. Such a
	// change never travels whole on the site's topic (an access list
	// carries the key that inverts its card hashes, which kiosks must
	// never hold): there it is Withheld, and each device of the role gets
	// it on its own down topic.
	Role string `cbor:"8,keyasint,omitempty"`
	// Withheld marks a change sent without its body: a device it is for
	// applies nothing from it on and waits for the change on its own
	// topic.
	Withheld bool `cbor:"9,keyasint,omitempty"`
	// Base and Delta make a live change carry what changed instead of the
	// whole entity: Delta turns the entity's version Base (the seq of its
	// previous change) into this one. An edge that holds another version
	// applies nothing from this change on and catches up, which sends the
	// entity whole (the log keeps snapshots only). Body is then empty.
	Base  uint64 `cbor:"10,keyasint,omitempty"`
	Delta *Delta `cbor:"11,keyasint,omitempty"`
	// BaseHLC is the HLC of the change Base names: with it, a version of
	// another history of the log (a hub restored from a backup numbers
	// its changes again) never passes for the base.
	BaseHLC hlc.Timestamp `cbor:"12,keyasint,omitempty"`
}

// IsDelta reports whether c carries a delta rather than the entity.
func (c *Change) IsDelta() bool { return c.Delta != nil }

// Form names how c carries its entity, for metrics: "delta", "snapshot",
// "deleted" or "withheld".
func (c *Change) Form() string {
	switch {
	case c.Withheld:
		return "withheld"
	case c.Deleted:
		return "deleted"
	case c.Delta != nil:
		return "delta"
	}
	return "snapshot"
}

// RoleGateway is the role of the devices that take access lists.
const RoleGateway = "gateway"

// Restricted reports whether c is for some devices only (by role).
func (c *Change) Restricted() bool { return c.Role != "" }

// Down carries changes (Prev, Last] of a site's log. An edge whose cursor
// is at least Prev applies the changes above its cursor and moves to Last;
// an edge further behind asks for a catch-up instead. The log is compacted
// (only the newest change of each entity is kept), so seqs inside the
// range may be missing: that is not a gap.
type Down struct {
	Site    string        `cbor:"1,keyasint"`
	Prev    uint64        `cbor:"2,keyasint"`
	Last    uint64        `cbor:"3,keyasint"`
	Changes []Change      `cbor:"4,keyasint,omitempty"`
	Clock   hlc.Timestamp `cbor:"5,keyasint,omitempty"`
	// Snapshot marks a catch-up from the start: the edge drops the entities
	// the hub no longer has before applying.
	Snapshot bool `cbor:"6,keyasint,omitempty"`
}

// Validate checks a Down's shape.
func (d *Down) Validate() error {
	if err := event.ValidID(d.Site); err != nil {
		return fmt.Errorf("down: site %w", err)
	}
	if d.Last < d.Prev {
		return fmt.Errorf("down: range (%d, %d]", d.Prev, d.Last)
	}
	var prev uint64
	for _, c := range d.Changes {
		if c.Seq <= d.Prev || c.Seq > d.Last || c.Seq <= prev {
			return fmt.Errorf("down: change %d outside (%d, %d] or out of order", c.Seq, d.Prev, d.Last)
		}
		prev = c.Seq
		if c.Entity == "" || c.ID == "" {
			return errors.New("down: change without entity or id")
		}
		if c.Delta != nil && (c.Base == 0 || c.Base >= c.Seq || len(c.Body) > 0 || c.Deleted) {
			return fmt.Errorf("down: delta change %d: base %d, body or deletion", c.Seq, c.Base)
		}
		if c.Device != "" {
			if err := event.ValidID(c.Device); err != nil {
				return fmt.Errorf("down: change device %w", err)
			}
		}
	}
	return nil
}

// DecodeDown decodes and validates a Down message.
func DecodeDown(data []byte) (Down, error) {
	var d Down
	if err := event.UnmarshalOwn(data, &d); err != nil {
		return Down{}, fmt.Errorf("decode down: %w", err)
	}
	if err := d.Validate(); err != nil {
		return Down{}, err
	}
	return d, nil
}
