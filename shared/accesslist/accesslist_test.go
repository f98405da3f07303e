package accesslist_test

import (
	"bytes"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"

	"linli/firmware/wiegand"
	"linli/shared/accesslist"
	"linli/shared/event"
	"linli/shared/hlc"
)

var key = bytes.Repeat([]byte{0x5a}, accesslist.KeySize)

func TestCanonical(t *testing.T) {
	tests := []struct {
		in, want string
		bad      bool
	}{
		{"26:123:45678", "26:123:45678", false},
		{"26:0123:045678", "26:123:45678", false},
		{"34:4097:513", "34:4097:513", false},
		{"26:256:1", "", true}, // facility does not fit 8 bits
		{"C42", "", true},
		{"", "", true},
	}
	for _, tt := range tests {
		got, err := accesslist.Canonical(tt.in)
		if tt.bad {
			if !errors.Is(err, wiegand.ErrCredential) {
				t.Errorf("Canonical(%q) = %q, %v; want ErrCredential", tt.in, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Canonical(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestHashAndPseudonym(t *testing.T) {
	h := accesslist.Hash(key, "26:123:45678")
	if len(h) != accesslist.HashSize {
		t.Fatalf("hash of %d bytes, want %d", len(h), accesslist.HashSize)
	}
	if !bytes.Equal(h, accesslist.Hash(key, "26:123:45678")) {
		t.Fatal("hash is not deterministic")
	}
	other := bytes.Repeat([]byte{0x5b}, accesslist.KeySize)
	if bytes.Equal(h, accesslist.Hash(other, "26:123:45678")) || bytes.Equal(h, accesslist.Hash(key, "26:123:45679")) {
		t.Fatal("hash ignores the key or the card")
	}
	p := accesslist.Pseudonym(h)
	if !strings.HasPrefix(p, accesslist.PseudonymPrefix) || len(p) != len(accesslist.PseudonymPrefix)+16 || strings.Contains(p, "45678") {
		t.Fatalf("pseudonym %q: want h: and 16 hex digits, no trace of the card", p)
	}
	// A pseudonym is a valid credential reference in an access event.
	if err := (&event.Access{Door: "B3-main", Credential: p, Result: "denied"}).Validate(); err != nil {
		t.Fatal(err)
	}
}

func list(t *testing.T, cards map[string][]string) accesslist.List {
	t.Helper()
	l := accesslist.List{Site: "S1", Building: "B3", Issued: hlc.New(1_750_000_000_000, 0), Key: key}
	for _, door := range slices.Sorted(maps.Keys(cards)) {
		d := accesslist.Door{Name: door}
		for _, c := range cards[door] {
			d.Cards = append(d.Cards, accesslist.Hash(key, c))
		}
		slices.SortFunc(d.Cards, bytes.Compare)
		l.Doors = append(l.Doors, d)
	}
	if err := l.Validate(); err != nil {
		t.Fatal(err)
	}
	return l
}

func TestAllows(t *testing.T) {
	l := list(t, map[string][]string{
		"B3-main": {"26:123:45678", "26:123:1001", "34:4097:513"},
		"B3-back": {"26:123:1001"},
	})
	tests := []struct {
		door, card string
		want       bool
	}{
		{"B3-main", "26:123:45678", true},
		{"B3-main", "34:4097:513", true},
		{"B3-back", "26:123:1001", true},
		{"B3-back", "26:123:45678", false}, // listed, but for another door
		{"B3-main", "26:99:1", false},
		{"B3-side", "26:123:1001", false}, // a door the list does not name
	}
	for _, tt := range tests {
		if got := l.Allows(tt.door, accesslist.Hash(key, tt.card)); got != tt.want {
			t.Errorf("Allows(%s, %s) = %v, want %v", tt.door, tt.card, got, tt.want)
		}
	}
	if got := l.Cards(); got["B3-main"] != 3 || got["B3-back"] != 1 {
		t.Errorf("Cards() = %v", got)
	}
}

func TestDecode(t *testing.T) {
	good := list(t, map[string][]string{"B3-main": {"26:123:45678"}})
	data, err := event.Marshal(good)
	if err != nil {
		t.Fatal(err)
	}
	got, err := accesslist.Decode(data)
	if err != nil || got.Issued != good.Issued || !got.Allows("B3-main", accesslist.Hash(key, "26:123:45678")) {
		t.Fatalf("Decode = %+v, %v", got, err)
	}
	for name, mutate := range map[string]func(*accesslist.List){
		"no issue time": func(l *accesslist.List) { l.Issued = 0 },
		"short key":     func(l *accesslist.List) { l.Key = l.Key[:8] },
		"bad hash":      func(l *accesslist.List) { l.Doors[0].Cards[0] = []byte("26:123:45678") },
	} {
		bad := list(t, map[string][]string{"B3-main": {"26:123:45678"}})
		mutate(&bad)
		data, err := event.Marshal(bad)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := accesslist.Decode(data); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
	if _, err := accesslist.Decode([]byte{0xff}); err == nil {
		t.Error("garbage decoded")
	}
}

// A credential from any path gets the pseudonym the reader path gives the
// same card; a pseudonym is kept; nothing in clear comes out.
func TestPseudonymFor(t *testing.T) {
	card := accesslist.Pseudonym(accesslist.Hash(key, "26:123:45678"))
	tests := []struct {
		in, want string
		err      error // nil: want is the answer
		noKey    bool
	}{
		{in: "26:123:45678", want: card},
		{in: "26:0123:045678", want: card},
		{in: "C42", want: accesslist.Pseudonym(accesslist.Hash(key, "C42"))},
		{in: "h:00112233aabbccdd", want: "h:00112233aabbccdd"},
		{in: "h:00112233aabbccdd", want: "h:00112233aabbccdd", noKey: true},
		{in: "26:123:45678", err: accesslist.ErrNoKey, noKey: true},
		{in: "C42", err: accesslist.ErrNoKey, noKey: true},
		{in: "26:256:1", err: wiegand.ErrCredential},
		{in: "h:", err: accesslist.ErrPseudonym},
		{in: "h:00112233AABBCCDD", err: accesslist.ErrPseudonym},
		{in: "h:00112233aabbccdd00", err: accesslist.ErrPseudonym},
		{in: "h:00112233aabbccdz", err: accesslist.ErrPseudonym},
	}
	for _, tt := range tests {
		k := key
		if tt.noKey {
			k = nil
		}
		got, err := accesslist.PseudonymFor(k, tt.in)
		if tt.err != nil {
			if !errors.Is(err, tt.err) || got != "" {
				t.Errorf("PseudonymFor(%q, key %v) = %q, %v; want %v", tt.in, !tt.noKey, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want || accesslist.ValidPseudonym(got) != nil {
			t.Errorf("PseudonymFor(%q, key %v) = %q, %v; want %q", tt.in, !tt.noKey, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "C 42", "C42\n", strings.Repeat("9", 97)} {
		if got, err := accesslist.PseudonymFor(key, bad); err == nil {
			t.Errorf("PseudonymFor(%q) = %q, want an error", bad, got)
		}
	}
}
