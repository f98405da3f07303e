package merge

import (
	"fmt"

	"linli/shared/accesslist"
	"linli/shared/event"
)

// RefAccess names a building's access list; its id is
// accesslist.ID(site, building).
const RefAccess = "access"

// accessList is the winning AccessListSet of one building: the latest by
// key, as a whole (an operator sends a building's whole list each time).
type accessList struct {
	Key key                 `cbor:"1,keyasint"`
	Set event.AccessListSet `cbor:"2,keyasint"`
}

func (s *State) applyAccessList(k key, b *event.AccessListSet) []Ref {
	id := accesslist.ID(b.Site, b.Building)
	if l := s.access[id]; l != nil && l.Key.compare(k) >= 0 {
		return nil
	}
	s.access[id] = &accessList{Key: k, Set: *b}
	return []Ref{{Kind: RefAccess, Site: b.Site, ID: id}}
}

func (l *accessList) view() accesslist.List {
	out := accesslist.List{Site: l.Set.Site, Building: l.Set.Building, Issued: l.Key.HLC,
		Key: append([]byte(nil), l.Set.Key...), Doors: make([]accesslist.Door, 0, len(l.Set.Doors))}
	for _, d := range l.Set.Doors {
		cards := make([][]byte, len(d.Cards))
		for i, c := range d.Cards {
			cards[i] = append([]byte(nil), c...)
		}
		out.Doors = append(out.Doors, accesslist.Door{Name: d.Door, Cards: cards})
	}
	return out
}

// AccessList returns a building's access list by id (accesslist.ID), or
// ErrNotFound.
func (s *State) AccessList(id string) (accesslist.List, error) {
	l := s.access[id]
	if l == nil {
		return accesslist.List{}, fmt.Errorf("access list %s: %w", id, ErrNotFound)
	}
	return l.view(), nil
}

// AccessLists lists the access lists of a site ("" for every site) by id.
func (s *State) AccessLists(site string) []accesslist.List {
	out := []accesslist.List{}
	for _, id := range sortedKeys(s.access) {
		if l := s.access[id]; site == "" || l.Set.Site == site {
			out = append(out, l.view())
		}
	}
	return out
}

// AccessKey returns the HMAC key of a site's newest access list, so that a
// new list of the site reuses it and cards keep their pseudonyms; nil when
// the site has no list yet.
func (s *State) AccessKey(site string) []byte {
	var newest *accessList
	for _, l := range s.access {
		if l.Set.Site == site && (newest == nil || newest.Key.compare(l.Key) < 0) {
			newest = l
		}
	}
	if newest == nil {
		return nil
	}
	return append([]byte(nil), newest.Set.Key...)
}
