package door

import (
	"reflect"
	"testing"
	"time"
)

var t0 = time.Date(2024, 5, 1, 8, 0, 0, 0, time.UTC)

func at(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

type sample struct {
	open bool
	at   float64 // seconds after t0
}

func TestMachine(t *testing.T) {
	const debounce, held = time.Second, 10 * time.Second
	tests := []struct {
		name      string
		startOpen bool
		held      time.Duration
		samples   []sample
		want      []Event
	}{
		{"nothing", false, held, []sample{{false, 5}}, nil},
		{"open and close", false, held, []sample{{true, 1}, {true, 2}, {false, 5}, {false, 6}},
			[]Event{{Kind: Open, At: at(1)}, {Kind: Close, At: at(5)}}},
		{"bounce while shut", false, held, []sample{{true, 1}, {false, 1.2}, {true, 1.4}, {false, 1.5}, {false, 9}}, nil},
		{"bounce while opening", false, held, []sample{{true, 1}, {false, 1.2}, {true, 1.4}, {true, 2.4}},
			[]Event{{Kind: Open, At: at(1.4)}}},
		{"bounce while open", false, held, []sample{{true, 1}, {true, 2}, {false, 3}, {true, 3.5}, {true, 9}},
			[]Event{{Kind: Open, At: at(1)}}},
		{"held open once", false, held, []sample{{true, 1}, {true, 2}, {true, 11}, {true, 30}, {false, 40}, {false, 41}},
			[]Event{{Kind: Open, At: at(1)}, {Kind: HeldOpen, At: at(11)}, {Kind: Close, At: at(40)}}},
		{"held open again on the next opening", false, held,
			[]sample{{true, 0}, {true, 10}, {false, 12}, {false, 13}, {true, 20}, {true, 30}},
			[]Event{{Kind: Open, At: at(0)}, {Kind: HeldOpen, At: at(10)}, {Kind: Close, At: at(12)},
				{Kind: Open, At: at(20)}, {Kind: HeldOpen, At: at(30)}}},
		{"a short opening long ago does not make the next one held open", false, held,
			[]sample{{true, 0}, {true, 1}, {false, 2}, {false, 3}, {true, 40}, {true, 41}, {true, 45}, {false, 46}, {false, 47}},
			[]Event{{Kind: Open, At: at(0)}, {Kind: Close, At: at(2)}, {Kind: Open, At: at(40)}, {Kind: Close, At: at(46)}}},
		{"late close after the limit", false, held, []sample{{true, 0}, {false, 15}, {false, 16}},
			[]Event{{Kind: Open, At: at(0)}, {Kind: HeldOpen, At: at(10)}, {Kind: Close, At: at(15)}}},
		{"closing as the limit passes is not held open", false, held,
			[]sample{{true, 0}, {true, 1}, {false, 9.5}, {false, 10}, {false, 10.5}},
			[]Event{{Kind: Open, At: at(0)}, {Kind: Close, At: at(9.5)}}},
		{"a bounce at the limit is still held open", false, held,
			[]sample{{true, 0}, {true, 1}, {false, 9.5}, {false, 10}, {true, 10.2}},
			[]Event{{Kind: Open, At: at(0)}, {Kind: HeldOpen, At: at(10)}}},
		{"open at start is timed from start", true, held, []sample{{true, 10}},
			[]Event{{Kind: HeldOpen, At: at(0).Add(held)}}},
		{"closed at start", true, held, []sample{{false, 2}, {false, 3}},
			[]Event{{Kind: Close, At: at(2)}}},
		{"held open disabled", false, 0, []sample{{true, 0}, {true, 1}, {true, 1000}},
			[]Event{{Kind: Open, At: at(0)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewMachine(tt.startOpen, t0, debounce, tt.held)
			var got []Event
			for _, s := range tt.samples {
				got = m.Step(got, s.open, at(s.at))
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v\nwant %v", got, tt.want)
			}
		})
	}
}

func TestMachineDeadline(t *testing.T) {
	m := NewMachine(false, t0, time.Second, 10*time.Second)
	steps := []struct {
		sample
		want   float64 // expected deadline in seconds after t0; -1 for none
		events int
	}{
		{sample{false, 0}, -1, 0},
		{sample{true, 1}, 2, 0},        // debounce pending
		{sample{true, 2}, 11, 1},       // open: held-open deadline
		{sample{false, 10.5}, 11.5, 0}, // pending close decides held open
		{sample{false, 11.5}, -1, 1},   // closed
	}
	for i, s := range steps {
		events := m.Step(nil, s.open, at(s.at))
		if len(events) != s.events {
			t.Errorf("step %d: %d events %v, want %d", i, len(events), events, s.events)
		}
		got, ok := m.Deadline()
		switch {
		case s.want < 0 && ok:
			t.Errorf("step %d: deadline %v, want none", i, got)
		case s.want >= 0 && (!ok || !got.Equal(at(s.want))):
			t.Errorf("step %d: deadline %v %v, want %v", i, got, ok, at(s.want))
		}
	}
}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{Open: "open", Close: "close", HeldOpen: "held_open", 0: "Kind(0)"} {
		if got := k.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int(k), got, want)
		}
	}
}
