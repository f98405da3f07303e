package gateway

import (
	"strings"
	"testing"
	"time"

	"linli/firmware/door"
	"linli/shared/event"
)

// step is one signal to a door's rules, at ms after t0.
type step struct {
	ms   int
	what string // grant, open, close, held, hold, unhold, tick
}

func results(recs []Record) string {
	var out []string
	for _, r := range recs {
		a := r.Body.(*event.Access)
		s := a.Result
		if r.Priority {
			s += "!"
		}
		out = append(out, s)
	}
	return strings.Join(out, " ")
}

func TestDoorRules(t *testing.T) {
	const unlock, grace = 5000 * time.Millisecond, 1000 * time.Millisecond
	tests := []struct {
		name  string
		steps []step
		want  string // access results in order; "!" marks a priority event
	}{
		{"card then door", []step{{0, "grant"}, {1500, "open"}, {4000, "close"}}, "open close"},
		{"door opened without a card is forced, an alarm", []step{{0, "open"}, {999, "tick"}, {1000, "tick"}, {3000, "close"}}, "forced! close"},
		{"opened after the unlock time", []step{{0, "grant"}, {5001, "open"}, {6001, "tick"}}, "forced!"},
		{"opened at the very end of the unlock time", []step{{0, "grant"}, {5000, "open"}}, "open"},
		{"a card read that arrives late still explains the opening", []step{{1500, "open"}, {0, "grant"}, {3000, "tick"}}, "open"},
		{"a card read after the opening does not", []step{{1500, "open"}, {1600, "grant"}, {2500, "tick"}}, "forced!"},
		{"closed before the grace ran out", []step{{0, "open"}, {200, "close"}}, "forced! close"},
		{"propped open", []step{{0, "grant"}, {1000, "open"}, {31000, "held"}, {60000, "close"}}, "open held_open close"},
		{"propped after forcing", []step{{0, "open"}, {30000, "held"}}, "forced! held_open"},
		{"escape door released for a fire", []step{{0, "hold"}, {100, "open"}, {200, "tick"}, {9000, "close"}}, "open close"},
		{"a release that arrives late explains the opening", []step{{500, "open"}, {100, "hold"}}, "open"},
		{"after the release ends doors are forced again", []step{{0, "hold"}, {1000, "unhold"}, {2000, "open"}, {3000, "tick"}}, "forced!"},
		{"two cards extend the release", []step{{0, "grant"}, {4000, "grant"}, {8000, "open"}}, "open"},
		{"nothing pending, nothing to tick", []step{{0, "tick"}, {100000, "tick"}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := NewDoor("B3-main", "B3", unlock, grace)
			var recs []Record
			for _, s := range tt.steps {
				at := t0.Add(time.Duration(s.ms) * time.Millisecond)
				switch s.what {
				case "grant":
					recs = append(recs, d.Grant(at)...)
				case "open":
					recs = append(recs, d.Event(door.Event{Door: "B3-main", Kind: door.Open, At: at})...)
				case "close":
					recs = append(recs, d.Event(door.Event{Door: "B3-main", Kind: door.Close, At: at})...)
				case "held":
					recs = append(recs, d.Event(door.Event{Door: "B3-main", Kind: door.HeldOpen, At: at})...)
				case "hold", "unhold":
					recs = append(recs, d.Hold(s.what == "hold", at)...)
				case "tick":
					recs = append(recs, d.Tick(at)...)
				}
			}
			if got := results(recs); got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
			for _, r := range recs {
				if err := r.Body.Validate(); err != nil {
					t.Fatalf("%+v: %v", r.Body, err)
				}
			}
		})
	}
}

func TestDoorDeadline(t *testing.T) {
	d := NewDoor("B3-main", "B3", time.Second, 500*time.Millisecond)
	if _, ok := d.Deadline(); ok {
		t.Fatal("a deadline with nothing pending")
	}
	d.Event(door.Event{Kind: door.Open, At: t0})
	if dl, ok := d.Deadline(); !ok || !dl.Equal(t0.Add(500*time.Millisecond)) || !d.Open() {
		t.Fatalf("deadline %v %v, open %v; want t0+500ms and open", dl, ok, d.Open())
	}
	d.Tick(t0.Add(time.Second))
	if _, ok := d.Deadline(); ok {
		t.Fatal("still pending after the tick decided")
	}
	if d.Holding() || d.Released(t0) {
		t.Fatal("released without a card or a hold")
	}
}
