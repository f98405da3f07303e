package gateway

import (
	"bytes"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"linli/firmware/wiegand"
	"linli/shared/accesslist"
	"linli/shared/hlc"
)

var (
	t0      = time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	siteKey = bytes.Repeat([]byte{0x42}, accesslist.KeySize)
)

// makeList builds the list of building B3 at site S1 issued at
// issued, with cards per door.
func makeList(t *testing.T, issued time.Time, cards map[string][]string) accesslist.List {
	t.Helper()
	l := accesslist.List{Site: "S1", Building: "B3", Issued: hlc.FromTime(issued), Key: siteKey}
	for _, door := range slices.Sorted(maps.Keys(cards)) {
		d := accesslist.Door{Name: door}
		for _, c := range cards[door] {
			d.Cards = append(d.Cards, accesslist.Hash(siteKey, c))
		}
		slices.SortFunc(d.Cards, bytes.Compare)
		l.Doors = append(l.Doors, d)
	}
	if err := l.Validate(); err != nil {
		t.Fatal(err)
	}
	return l
}

// swipe is what the reader makes of a frame: the bits of card, with the
// bits listed in flip inverted, cut to n bits when n > 0.
func swipe(t *testing.T, card string, n int, flip ...int) wiegand.Swipe {
	t.Helper()
	c, err := wiegand.ParseCredential(card)
	if err != nil {
		t.Fatal(err)
	}
	bits, err := wiegand.Encode(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range flip {
		bits[i] ^= 1
	}
	if n > 0 {
		bits = bits[:n]
	}
	s := wiegand.Swipe{Reader: "B3-main", At: t0, Bits: bits}
	s.Credential, s.Err = wiegand.Decode(bits)
	return s
}

func TestAccessDecide(t *testing.T) {
	list := map[string][]string{"B3-main": {"26:123:45678", "34:4097:513"}, "B3-back": {"26:123:1001"}}
	const maxAge = time.Hour
	tests := []struct {
		name     string
		list     bool          // a list was installed at t0
		age      time.Duration // time since the list was last confirmed
		door     string
		fallback Fallback
		swipe    wiegand.Swipe
		result   string
		reason   string
	}{
		{"listed card", true, 0, "B3-main", FallbackLocked, swipe(t, "26:123:45678", 0), "granted", ""},
		{"34-bit card", true, time.Minute, "B3-main", FallbackLocked, swipe(t, "34:4097:513", 0), "granted", ""},
		{"card of another door", true, 0, "B3-main", FallbackLocked, swipe(t, "26:123:1001", 0), "denied", "not_listed"},
		{"unknown card", true, 0, "B3-main", FallbackLocked, swipe(t, "26:99:1", 0), "denied", "not_listed"},
		{"no list yet", false, 0, "B3-main", FallbackLast, swipe(t, "26:123:45678", 0), "denied", "no_list"},
		{"parity error", true, 0, "B3-main", FallbackLocked, swipe(t, "26:123:45678", 0, 3), "bad_read", "parity"},
		{"trailing parity error", true, 0, "B3-main", FallbackLocked, swipe(t, "26:123:45678", 0, 25), "bad_read", "parity"},
		{"half a frame", true, 0, "B3-main", FallbackLocked, swipe(t, "26:123:45678", 13), "bad_read", "frame_length"},
		{"noise", true, 0, "B3-main", FallbackLocked, wiegand.Swipe{Reader: "B3-main", Err: wiegand.ErrBadBit}, "bad_read", "bad_bit"},
		{"stale list, locked door", true, maxAge + time.Second, "B3-main", FallbackLocked, swipe(t, "26:123:45678", 0), "denied", "stale_list"},
		{"stale list, last-list door, listed", true, maxAge + time.Second, "B3-main", FallbackLast, swipe(t, "26:123:45678", 0), "granted", "stale_list"},
		{"stale list, last-list door, unlisted", true, 48 * time.Hour, "B3-main", FallbackLast, swipe(t, "26:99:1", 0), "denied", "stale_list"},
		{"exactly at the limit is not stale", true, maxAge, "B3-main", FallbackLocked, swipe(t, "26:123:45678", 0), "granted", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := NewAccess("S1", "B3", maxAge)
			if tt.list {
				if err := a.Install(makeList(t, t0, list), t0); err != nil {
					t.Fatal(err)
				}
			}
			got := a.Decide(tt.door, tt.fallback, tt.swipe, t0.Add(tt.age))
			if got.Result != tt.result || got.Reason != tt.reason || got.Door != tt.door || got.Building != "B3" {
				t.Fatalf("got %s/%s at %s (%s), want %s/%s", got.Result, got.Reason, got.Door, got.Building, tt.result, tt.reason)
			}
			if err := got.Validate(); err != nil {
				t.Fatalf("the access event does not validate: %v", err)
			}
			switch {
			case tt.swipe.Err != nil || !tt.list:
				if got.Credential != "" {
					t.Fatalf("credential %q on a bad read or without a key", got.Credential)
				}
			case !strings.HasPrefix(got.Credential, accesslist.PseudonymPrefix) || strings.Contains(got.Credential, tt.swipe.Credential.String()):
				t.Fatalf("credential %q: want a pseudonym, never the card", got.Credential)
			}
		})
	}
}

func TestAccessListLifecycle(t *testing.T) {
	a := NewAccess("S1", "B3", time.Hour)
	old := makeList(t, t0, map[string][]string{"B3-main": {"26:123:45678"}})
	newer := makeList(t, t0.Add(time.Minute), map[string][]string{"B3-main": {"26:123:1001"}}) // 45678 revoked
	other := old
	other.Building = "B4"

	if err := a.Install(other, t0); !errors.Is(err, ErrOtherBuilding) {
		t.Fatalf("another building's list: %v, want ErrOtherBuilding", err)
	}
	if st := a.State(t0); st.Present {
		t.Fatal("a list is in force after refusing the only one offered")
	}
	if err := a.Install(old, t0); err != nil {
		t.Fatal(err)
	}
	if err := a.Install(newer, t0.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	// The old list again (a replay, or a catch-up racing a newer change)
	// must not bring the revoked card back.
	if err := a.Install(old, t0.Add(3*time.Minute)); !errors.Is(err, ErrNotNewer) {
		t.Fatalf("older list: %v, want ErrNotNewer", err)
	}
	if err := a.Install(newer, t0.Add(3*time.Minute)); !errors.Is(err, ErrNotNewer) {
		t.Fatalf("same list again: %v, want ErrNotNewer", err)
	}
	if got := a.Decide("B3-main", FallbackLocked, swipe(t, "26:123:45678", 0), t0.Add(4*time.Minute)); got.Result != "denied" {
		t.Fatalf("revoked card: %s, want denied", got.Result)
	}

	// Ageing: from the later of issue and last confirmation.
	now := t0.Add(2*time.Minute + time.Hour + time.Second)
	if st := a.State(now); !st.Stale || st.Age != time.Hour+time.Second {
		t.Fatalf("state %+v, want stale by 1h1s", st)
	}
	a.Confirm(now.Add(-time.Minute)) // the hub answered a minute ago
	if st := a.State(now); st.Stale || st.Age != time.Minute {
		t.Fatalf("after confirmation: %+v, want fresh, 1m old", st)
	}
	a.Confirm(t0) // an older confirmation changes nothing
	if st := a.State(now); st.Age != time.Minute {
		t.Fatalf("an old confirmation moved the age to %v", st.Age)
	}
	if never := NewAccess("S1", "B3", 0); never.Install(old, t0) != nil || never.State(t0.Add(1000*time.Hour)).Stale {
		t.Fatal("max age 0 must never go stale")
	}
}
