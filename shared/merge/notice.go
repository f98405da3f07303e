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
}

// InForce reports whether the notice is shown at now.
func (n *NoticeView) InForce(now hlc.Timestamp) bool {
	return n.Expires == 0 || now.WallMillis() < n.Expires
}

// Notice returns a notice by id, expired or not, or ErrNotFound.
func (s *State) Notice(id string) (NoticeView, error) {
	n := s.notices[id]
	if n == nil {
		return NoticeView{}, fmt.Errorf("notice %s: %w", id, ErrNotFound)
	}
	b := &n.Set
	return NoticeView{ID: b.ID, Site: b.Site, Buildings: append([]string{}, b.Buildings...), Title: b.Title,
		Body: b.Body, Category: b.Category, Expires: b.Expires, Updated: n.Key.HLC}, nil
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
