package event

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

func hashes(bs ...byte) [][]byte {
	var out [][]byte
	for _, b := range bs {
		out = append(out, bytes.Repeat([]byte{b}, CardHashSize))
	}
	return out
}

func TestValidateAccess(t *testing.T) {
	key := bytes.Repeat([]byte{7}, AccessKeySize)
	list := func(f func(*AccessListSet)) *AccessListSet {
		l := &AccessListSet{Site: "S1", Building: "B3", Key: key, Who: "admin",
			Doors: []AccessDoor{{Door: "B3-back", Cards: hashes(1, 2)}, {Door: "B3-main", Cards: hashes(1, 3)}}}
		f(l)
		return l
	}
	tests := []struct {
		name  string
		body  Body
		field string // "" means valid
	}{
		{"list ok", list(func(*AccessListSet) {}), ""},
		{"list empty revokes everyone", list(func(l *AccessListSet) { l.Doors = nil }), ""},
		{"list door with no cards", list(func(l *AccessListSet) { l.Doors[0].Cards = nil }), ""},
		{"list without building", list(func(l *AccessListSet) { l.Building = "" }), "building"},
		{"list short key", list(func(l *AccessListSet) { l.Key = key[:16] }), "key"},
		{"list doors out of order", list(func(l *AccessListSet) { l.Doors[0].Door = "B3-zz" }), "doors"},
		{"list door twice", list(func(l *AccessListSet) { l.Doors[1].Door = "B3-back" }), "doors"},
		{"list bad door id", list(func(l *AccessListSet) { l.Doors[0].Door = "a/b" }), "doors"},
		{"list short hash", list(func(l *AccessListSet) { l.Doors[0].Cards[0] = []byte{1} }), "cards"},
		{"list card twice", list(func(l *AccessListSet) { l.Doors[0].Cards = hashes(2, 2) }), "cards"},
		{"list cards out of order", list(func(l *AccessListSet) { l.Doors[0].Cards = hashes(3, 2) }), "cards"},
		{"list too many doors", list(func(l *AccessListSet) {
			l.Doors = nil
			for i := range MaxAccessDoors + 1 {
				l.Doors = append(l.Doors, AccessDoor{Door: "D" + string(rune('a'+i/26/26%26)) + string(rune('a'+i/26%26)) + string(rune('a'+i%26))})
			}
		}), "doors"},
		{"list without operator", list(func(l *AccessListSet) { l.Who = "" }), "who"},
		{"access open", &Access{Door: "B3-main", Result: "open"}, ""},
		{"access denied with reason", &Access{Door: "B3-main", Credential: "h:00ff00ff00ff00ff", Result: "denied", Reason: "stale_list"}, ""},
		{"access bad read", &Access{Door: "B3-main", Result: "bad_read", Reason: "parity"}, ""},
		{"access unknown reason", &Access{Door: "B3-main", Result: "denied", Reason: "bad luck"}, "reason"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.body.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tt.field {
				t.Fatalf("Validate() = %v, want a FieldError on %q", err, tt.field)
			}
		})
	}
}

func TestAccessListRoundTrip(t *testing.T) {
	b := &AccessListSet{Site: "S1", Building: "B3", Key: bytes.Repeat([]byte{7}, AccessKeySize), Who: "admin",
		Doors: []AccessDoor{{Door: "B3-main", Cards: hashes(1, 2, 3)}}}
	ev, err := NewEvent("hub", 1, 1, b)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ev.Decode()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, b) {
		t.Fatalf("round trip gave %+v, want %+v", got, b)
	}
	if !KindAccessListSet.IsHub() || KindAccessListSet.String() != "access_list_set" {
		t.Fatalf("kind %d is %q, hub %v", KindAccessListSet, KindAccessListSet, KindAccessListSet.IsHub())
	}
}
