package gateway

import (
	"errors"
	"fmt"
	"time"

	"linli/firmware/wiegand"
	"linli/shared/accesslist"
	"linli/shared/event"
)

// Fallback is what a door does while the access list is stale.
type Fallback string

// Fallbacks.
const (
	// FallbackLocked denies every card while the list is stale: a revoked
	// card cannot get in on an old list (the default).
	FallbackLocked Fallback = "locked"
	// FallbackLast keeps deciding by the last list: residents are not
	// locked out of their building by a long network outage.
	FallbackLast Fallback = "last"
)

// Errors of installing a list.
var (
	// ErrOtherBuilding: the list is for another building than the gateway's.
	ErrOtherBuilding = errors.New("access list for another building")
	// ErrNotNewer: the list is not newer than the one in force (a replay of
	// an old list, or the same list again).
	ErrNotNewer = errors.New("access list is not newer than the one in force")
)

// Access decides card swipes from the building's access list. It is pure:
// the caller passes the time, so staleness is tested without waiting.
type Access struct {
	site, building string
	maxAge         time.Duration // 0: a list never goes stale

	list      *accesslist.List
	confirmed time.Time // when the list was last known to be the hub's current one
}

// NewAccess returns rules for the gateway of building at site, with lists
// going stale maxAge after they were last confirmed (0: never).
func NewAccess(site, building string, maxAge time.Duration) *Access {
	return &Access{site: site, building: building, maxAge: maxAge}
}

// Install takes l as the list in force, confirmed at now, unless it is for
// another building (ErrOtherBuilding) or not newer than the list in force
// (ErrNotNewer): a list never goes back in time, so an old list replayed
// cannot bring back a revoked card.
func (a *Access) Install(l accesslist.List, now time.Time) error {
	switch {
	case l.Site != a.site || l.Building != a.building:
		return fmt.Errorf("%w: %s, this gateway is %s", ErrOtherBuilding, accesslist.ID(l.Site, l.Building), accesslist.ID(a.site, a.building))
	case a.list != nil && l.Issued <= a.list.Issued:
		return fmt.Errorf("%w: issued %v, in force since %v", ErrNotNewer, l.Issued.Time(), a.list.Issued.Time())
	}
	a.list = &l
	a.confirmed = now
	return nil
}

// List returns the list in force, if any.
func (a *Access) List() (accesslist.List, bool) {
	if a.list == nil {
		return accesslist.List{}, false
	}
	return *a.list, true
}

// Key is the site's card key from the list in force; nil without a list.
func (a *Access) Key() []byte {
	if a.list == nil {
		return nil
	}
	return a.list.Key
}

// Confirm records that at t the gateway was in touch with the hub, which
// sends every new list at once: the list in force was current then.
func (a *Access) Confirm(t time.Time) {
	if t.After(a.confirmed) {
		a.confirmed = t
	}
}

// ListState describes the list in force.
type ListState struct {
	Present   bool
	Issued    time.Time // when the operator set it
	Confirmed time.Time // when it was last known current
	Age       time.Duration
	Stale     bool
}

// State describes the list in force at now.
func (a *Access) State(now time.Time) ListState {
	if a.list == nil {
		return ListState{}
	}
	s := ListState{Present: true, Issued: a.list.Issued.Time(), Confirmed: a.confirmed}
	fresh := s.Confirmed
	if s.Issued.After(fresh) {
		fresh = s.Issued
	}
	s.Age = max(now.Sub(fresh), 0)
	s.Stale = a.maxAge > 0 && s.Age > a.maxAge
	return s
}

// Decide turns a swipe at door into an access event: bad_read for a frame
// that is not a card, else granted or denied by the list in force (and the
// door's fallback while the list is stale). The card appears only as its
// pseudonym, and only when a list gives the key to make one.
func (a *Access) Decide(door string, fallback Fallback, s wiegand.Swipe, now time.Time) *event.Access {
	ev := &event.Access{Door: door, Building: a.building}
	if s.Err != nil {
		ev.Result, ev.Reason = "bad_read", badReadReason(s.Err)
		return ev
	}
	ev.Result = "denied"
	if a.list == nil {
		ev.Reason = "no_list"
		return ev
	}
	h := accesslist.Hash(a.list.Key, s.Credential.String())
	ev.Credential = accesslist.Pseudonym(h)
	allowed := a.list.Allows(door, h)
	if a.State(now).Stale {
		ev.Reason = "stale_list"
		if fallback == FallbackLast && allowed {
			ev.Result = "granted"
		}
		return ev
	}
	if allowed {
		ev.Result = "granted"
	} else {
		ev.Reason = "not_listed"
	}
	return ev
}

// badReadReason names why a frame is not a card.
func badReadReason(err error) string {
	switch {
	case errors.Is(err, wiegand.ErrParity):
		return "parity"
	case errors.Is(err, wiegand.ErrBadBit):
		return "bad_bit"
	}
	return "frame_length"
}
