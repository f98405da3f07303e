package merge

import (
	"cmp"
	"fmt"
	"slices"

	"linli/shared/event"
	"linli/shared/hlc"
)

// notice is the winning NoticeSet of one notice id.
type notice struct {
	Key key             `cbor:"1,keyasint"`
	Set event.NoticeSet `cbor:"2,keyasint"`
}

func (s *State) applyNotice(k key, b *event.NoticeSet) []Ref {
	if n := s.notices[b.ID]; n != nil && n.Key.compare(k) >= 0 {
		return nil
	}
	s.notices[b.ID] = &notice{Key: k, Set: *b}
	return []Ref{{Kind: RefNotice, Site: b.Site, ID: b.ID}}
}

// NoticeView is a notice as the hub serves and sends it down.
type NoticeView struct {
	ID        string        `cbor:"1,keyasint" json:"id"`
	Site      string        `cbor:"2,keyasint" json:"site"`
	Buildings []string      `cbor:"3,keyasint" json:"buildings"` // empty: the whole site
	Title     string        `cbor:"4,keyasint" json:"title"`
	Body      string        `cbor:"5,keyasint" json:"body"`
	Category  string        `cbor:"6,keyasint" json:"category"`
	Expires   int64         `cbor:"7,keyasint" json:"expires,omitempty"` // Unix milliseconds; 0 = never
	Updated   hlc.Timestamp `cbor:"8,keyasint" json:"updated"`
	// Withdrawn: an operator took the notice down. The hub keeps it in
	// its history; edges get a deletion (see State.View) and never see it.
	Withdrawn bool `cbor:"9,keyasint,omitempty" json:"withdrawn,omitempty"`
}

// InForce reports whether the notice is shown at now: not withdrawn and
// not expired.
func (n *NoticeView) InForce(now hlc.Timestamp) bool {
	return !n.Withdrawn && (n.Expires == 0 || now.WallMillis() < n.Expires)
}

// Notice returns a notice by id, expired or not, or ErrNotFound.
func (s *State) Notice(id string) (NoticeView, error) {
	n := s.notices[id]
	if n == nil {
		return NoticeView{}, fmt.Errorf("notice %s: %w", id, ErrNotFound)
	}
	b := &n.Set
	return NoticeView{ID: b.ID, Site: b.Site, Buildings: append([]string{}, b.Buildings...), Title: b.Title,
		Body: b.Body, Category: b.Category, Expires: b.Expires, Updated: n.Key.HLC, Withdrawn: b.Withdrawn}, nil
}

// NoticeSet returns the winning definition of a notice, the base an
// operator's edit changes, or ErrNotFound.
func (s *State) NoticeSet(id string) (event.NoticeSet, error) {
	n := s.notices[id]
	if n == nil {
		return event.NoticeSet{}, fmt.Errorf("notice %s: %w", id, ErrNotFound)
	}
	set := n.Set
	set.Buildings = slices.Clone(set.Buildings)
	return set, nil
}

// NoticeHistory lists every notice of a site ("" for every site) ever
// published, withdrawn and expired ones too, newest first.
func (s *State) NoticeHistory(site string) []NoticeView {
	out := []NoticeView{}
	for _, id := range sortedKeys(s.notices) {
		n, _ := s.Notice(id) // cannot fail: listed
		if site == "" || n.Site == site {
			out = append(out, n)
		}
	}
	slices.SortStableFunc(out, func(a, b NoticeView) int { return cmp.Compare(b.Updated, a.Updated) })
	return out
}

// Notices lists the notices of a site ("" for every site) in force at now,
// newest first (ties by id).
func (s *State) Notices(site string, now hlc.Timestamp) []NoticeView {
	out := []NoticeView{}
	for _, id := range sortedKeys(s.notices) {
		n, _ := s.Notice(id) // cannot fail: listed
		if (site == "" || n.Site == site) && n.InForce(now) {
			out = append(out, n)
		}
	}
	slices.SortStableFunc(out, func(a, b NoticeView) int { return cmp.Compare(b.Updated, a.Updated) })
	return out
}
