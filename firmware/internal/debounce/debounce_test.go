package debounce

import (
	"fmt"
	"reflect"
	"testing"
	"time"
)

var t0 = time.Date(2024, 5, 1, 8, 0, 0, 0, time.UTC)

func ms(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }

type sample struct {
	active bool
	at     int // ms after t0
}

func TestUpdate(t *testing.T) {
	tests := []struct {
		name    string
		initial bool
		delay   int
		samples []sample
		want    []Change
	}{
		{"steady", false, 5, []sample{{false, 0}, {false, 10}}, nil},
		{"clean change", false, 5, []sample{{true, 0}, {true, 5}}, []Change{{true, ms(0)}}},
		{"not yet", false, 5, []sample{{true, 0}, {true, 4}}, nil},
		{"bounce filtered", false, 5, []sample{{true, 0}, {false, 1}, {true, 2}, {false, 3}, {false, 20}}, nil},
		{"bounce then settle", false, 5, []sample{{true, 0}, {false, 1}, {true, 2}, {true, 7}}, []Change{{true, ms(2)}}},
		{"late sample keeps a level that held", false, 5, []sample{{true, 0}, {false, 9}, {false, 14}},
			[]Change{{true, ms(0)}, {false, ms(9)}}},
		{"zero delay", true, 0, []sample{{false, 1}, {true, 1}, {true, 2}},
			[]Change{{false, ms(1)}, {true, ms(1)}}},
		{"starts active", true, 5, []sample{{false, 0}, {false, 5}, {true, 6}, {true, 11}},
			[]Change{{false, ms(0)}, {true, ms(6)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := New(tt.initial, time.Duration(tt.delay)*time.Millisecond)
			var got []Change
			for _, s := range tt.samples {
				got = d.Update(got, s.active, ms(s.at))
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// reference debounces a whole recorded signal at once: the signal is split into runs of
// one level, and a run of the other level than the accepted one is accepted when it
// lasted at least delay. It shares no code with Debouncer.
func reference(initial bool, delay int, samples []sample, end int) []Change {
	var out []Change
	accepted := initial
	for i := 0; i < len(samples); {
		j := i
		for j < len(samples) && samples[j].active == samples[i].active {
			j++
		}
		stop := end
		if j < len(samples) {
			stop = samples[j].at
		}
		if samples[i].active != accepted && stop-samples[i].at >= delay {
			accepted = samples[i].active
			out = append(out, Change{accepted, ms(samples[i].at)})
		}
		i = j
	}
	return out
}

// TestUpdateExhaustive compares Debouncer with reference on every signal of up to five
// samples over a small grid of levels, gaps and delays.
func TestUpdateExhaustive(t *testing.T) {
	const maxLen, gaps = 5, 3
	n := 0
	for delay := 0; delay < 4; delay++ {
		for _, initial := range []bool{false, true} {
			for length := 0; length <= maxLen; length++ {
				total := 1
				for range length {
					total *= 2 * gaps
				}
				for code := range total {
					samples := make([]sample, length)
					at, c := 0, code
					for i := range samples {
						at += c % gaps
						c /= gaps
						samples[i] = sample{active: c%2 == 1, at: at}
						c /= 2
					}
					end := at + 3 // one more look after the last sample
					last := initial
					if length > 0 {
						last = samples[length-1].active
					}
					d := New(initial, time.Duration(delay)*time.Millisecond)
					var got []Change
					for _, s := range samples {
						got = d.Update(got, s.active, ms(s.at))
					}
					got = d.Update(got, last, ms(end))
					want := reference(initial, delay, samples, end)
					if !reflect.DeepEqual(got, want) {
						t.Fatalf("initial %v delay %d samples %v end %d: got %v, want %v", initial, delay, samples, end, got, want)
					}
					if d.Active() != lastLevel(initial, want) {
						t.Fatalf("initial %v delay %d samples %v: Active %v after %v", initial, delay, samples, d.Active(), want)
					}
					n++
				}
			}
		}
	}
	if testing.Verbose() {
		fmt.Println("signals checked:", n)
	}
}

func lastLevel(initial bool, changes []Change) bool {
	if len(changes) == 0 {
		return initial
	}
	return changes[len(changes)-1].Active
}

func TestDeadline(t *testing.T) {
	d := New(false, 5*time.Millisecond)
	if _, ok := d.Deadline(); ok {
		t.Fatal("deadline with nothing pending")
	}
	d.Update(nil, true, ms(2))
	if got, ok := d.Deadline(); !ok || !got.Equal(ms(7)) {
		t.Fatalf("Deadline = %v %v, want %v", got, ok, ms(7))
	}
	if since, ok := d.Pending(); !ok || !since.Equal(ms(2)) {
		t.Fatalf("Pending = %v %v, want %v", since, ok, ms(2))
	}
	d.Update(nil, false, ms(3))
	if _, ok := d.Deadline(); ok {
		t.Fatal("deadline after the bounce ended")
	}
}
