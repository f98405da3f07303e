package merge_test

import (
	"bytes"
	"errors"
	"testing"

	"linli/shared/accesslist"
	"linli/shared/event"
	"linli/shared/merge"
)

func accessSet(building string, key byte, cards ...byte) *event.AccessListSet {
	d := event.AccessDoor{Door: building + "-main"}
	for _, c := range cards {
		d.Cards = append(d.Cards, bytes.Repeat([]byte{c}, event.CardHashSize))
	}
	return &event.AccessListSet{Site: site, Building: building, Key: bytes.Repeat([]byte{key}, event.AccessKeySize),
		Doors: []event.AccessDoor{d}, Who: "op1"}
}

func TestAccessListLastWriterWins(t *testing.T) {
	tests := []struct {
		name  string
		facts func(t *testing.T) []merge.Fact
		cards int    // of B3's list
		key   byte   // the site's key
		ids   string // lists of the site
	}{
		{"one list", func(t *testing.T) []merge.Fact {
			return []merge.Fact{fact(t, "hub", 1, 0, accessSet("B3", 1, 1, 2))}
		}, 2, 1, "S1:B3"},
		{"the later list replaces the whole list", func(t *testing.T) []merge.Fact {
			return []merge.Fact{fact(t, "hub", 1, 0, accessSet("B3", 1, 1, 2, 3)), fact(t, "hub", 2, 10, accessSet("B3", 1, 4))}
		}, 1, 1, "S1:B3"},
		{"a tie in HLC goes to the greater device", func(t *testing.T) []merge.Fact {
			return []merge.Fact{fact(t, "hub-b", 1, 5, accessSet("B3", 2, 1, 2)), fact(t, "hub", 1, 5, accessSet("B3", 1, 1))}
		}, 2, 2, "S1:B3"},
		{"buildings are separate; the newest key is the site's", func(t *testing.T) []merge.Fact {
			return []merge.Fact{fact(t, "hub", 1, 0, accessSet("B3", 1, 1)), fact(t, "hub", 2, 10, accessSet("B4", 2, 7, 8, 9))}
		}, 1, 2, "S1:B3 S1:B4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := sameBothWays(t, tt.facts(t)...)
			l, err := s.AccessList(accesslist.ID(site, "B3"))
			if err != nil {
				t.Fatal(err)
			}
			if got := l.Cards()["B3-main"]; got != tt.cards {
				t.Errorf("B3-main has %d cards, want %d", got, tt.cards)
			}
			if got := s.AccessKey(site); !bytes.Equal(got, bytes.Repeat([]byte{tt.key}, event.AccessKeySize)) {
				t.Errorf("site key %x, want all %d", got, tt.key)
			}
			var ids string
			for _, l := range s.AccessLists(site) {
				if ids != "" {
					ids += " "
				}
				ids += accesslist.ID(l.Site, l.Building)
			}
			if ids != tt.ids {
				t.Errorf("lists %q, want %q", ids, tt.ids)
			}
			if err := l.Validate(); err != nil {
				t.Errorf("the view does not validate: %v", err)
			}
		})
	}
}

func TestAccessListView(t *testing.T) {
	f := fact(t, "hub", 1, 42, accessSet("B3", 1, 1))
	s := build(t, f)
	refs, err := s.Apply(fact(t, "hub", 2, 10, accessSet("B3", 1, 2, 3))) // older: loses
	if err != nil || len(refs) != 0 {
		t.Fatalf("an older list changed %v (err %v), want nothing", refs, err)
	}
	ref := merge.Ref{Kind: merge.RefAccess, ID: accesslist.ID(site, "B3")}
	v, ok := s.View(ref)
	if !ok {
		t.Fatal("no view of the list")
	}
	l := v.(accesslist.List)
	if l.Issued != at(42) || l.Site != site || l.Building != "B3" {
		t.Fatalf("view %+v, want issued at 42 ms for S1/B3", l)
	}
	l.Doors[0].Cards[0][0] = 0xff // a caller's change must not reach the state
	again, _ := s.AccessList(ref.ID)
	if again.Doors[0].Cards[0][0] == 0xff {
		t.Fatal("the view shares memory with the state")
	}
	if _, err := s.AccessList(accesslist.ID(site, "B9")); !errors.Is(err, merge.ErrNotFound) {
		t.Fatalf("unknown building: %v, want ErrNotFound", err)
	}
	if s.AccessKey("other") != nil {
		t.Fatal("a site without lists has a key")
	}
}

func TestAccessListInvalid(t *testing.T) {
	bad := accessSet("B3", 1, 2, 1) // cards out of order
	ev, err := event.NewEvent("hub", 1, at(0), bad)
	if err != nil {
		t.Fatal(err)
	}
	s := merge.New()
	if _, err := s.Apply(merge.Fact{Site: site, Event: ev}); !errors.Is(err, merge.ErrInvalid) {
		t.Fatalf("unsorted cards: %v, want ErrInvalid", err)
	}
	if len(s.AccessLists("")) != 0 {
		t.Fatal("an invalid list was kept")
	}
}
