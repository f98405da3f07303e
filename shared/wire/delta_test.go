package wire

import (
	"bytes"
	"testing"

	"linli/shared/event"
)

// Patch(old, Diff(old, new)) is new byte for byte, for the edits views
// see: entries added and removed anywhere in a list, fields set and
// dropped, one entry of a list of maps patched in place.
func TestDiffPatch(t *testing.T) {
	type door struct {
		Name  string   `cbor:"1,keyasint"`
		Cards [][]byte `cbor:"2,keyasint"`
	}
	type view struct {
		Title string   `cbor:"1,keyasint"`
		Seats uint32   `cbor:"2,keyasint"`
		List  []string `cbor:"3,keyasint"`
		Note  string   `cbor:"4,keyasint,omitempty"`
		Doors []door   `cbor:"5,keyasint"`
	}
	base := view{Title: "a", Seats: 3, List: []string{"r1", "r3", "r5"}, Note: "n",
		Doors: []door{{"east", [][]byte{{1}, {3}}}, {"west", [][]byte{{2}}}}}
	for _, c := range []struct {
		name string
		edit func(v *view)
	}{
		{"nothing", func(v *view) {}},
		{"insert in the middle", func(v *view) { v.List = []string{"r1", "r2", "r3", "r5"} }},
		{"append", func(v *view) { v.List = append(v.List, "r9") }},
		{"remove the head", func(v *view) { v.List = v.List[1:] }},
		{"empty the list", func(v *view) { v.List = []string{} }},
		{"list to null", func(v *view) { v.List = nil }},
		{"scalars", func(v *view) { v.Title, v.Seats = "b", 2 }},
		{"drop an omitempty field", func(v *view) { v.Note = "" }},
		{"a card added to a door", func(v *view) { v.Doors[0].Cards = [][]byte{{1}, {2}, {3}} }},
		{"a door added", func(v *view) { v.Doors = append(v.Doors, door{"north", nil}) }},
		{"a door and a seat", func(v *view) { v.Doors[1].Cards = nil; v.Seats = 9 }},
	} {
		t.Run(c.name, func(t *testing.T) {
			old, _ := event.Marshal(base)
			v := base
			v.List = append([]string(nil), base.List...)
			v.Doors = append([]door(nil), base.Doors...)
			c.edit(&v)
			want, _ := event.Marshal(v)
			d, err := Diff(old, want)
			if err != nil {
				t.Fatal(err)
			}
			// The delta travels encoded.
			enc, err := event.Marshal(d)
			if err != nil {
				t.Fatal(err)
			}
			var back Delta
			if err := event.Unmarshal(enc, &back); err != nil {
				t.Fatal(err)
			}
			got, err := Patch(old, &back)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("patched %x\nwant    %x", got, want)
			}
		})
	}
}

// A delta that does not fit the body is an error, not a wrong body.
func TestPatchRefusesWhatDoesNotFit(t *testing.T) {
	body, _ := event.Marshal(map[int][]string{1: {"a"}})
	for _, d := range []*Delta{
		{Lists: map[int]ListEdit{1: {At: 1, Del: 1}}},
		{Lists: map[int]ListEdit{1: {At: 3, Ins: nil}}},
		{Lists: map[int]ListEdit{1: {At: 1, Elem: &Delta{}}}},
		{Lists: map[int]ListEdit{2: {Ins: nil}}},
	} {
		if _, err := Patch(body, d); err == nil {
			t.Errorf("patch %+v: no error", d)
		}
	}
}
