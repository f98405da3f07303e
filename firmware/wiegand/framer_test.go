package wiegand

import (
	"reflect"
	"testing"
	"time"
)

func TestFramer(t *testing.T) {
	t0 := time.Date(2024, 5, 1, 8, 0, 0, 0, time.UTC)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	type in struct {
		bit   byte
		at    int
		flush bool // a Flush at `at` instead of a bit
	}
	tests := []struct {
		name string
		ins  []in
		want []Frame
	}{
		{"nothing", []in{{flush: true, at: 100}}, nil},
		{"one frame flushed", []in{{1, 0, false}, {0, 2, false}, {1, 4, false}, {flush: true, at: 29}},
			[]Frame{{Bits: []byte{1, 0, 1}, At: ms(0)}}},
		{"not yet", []in{{1, 0, false}, {flush: true, at: 24}}, nil},
		{"gap splits frames", []in{{1, 0, false}, {0, 30, false}, {flush: true, at: 55}},
			[]Frame{{Bits: []byte{1}, At: ms(0)}, {Bits: []byte{0}, At: ms(30)}}},
		{"gap measured from the last bit", []in{{1, 0, false}, {1, 20, false}, {1, 40, false}, {flush: true, at: 64}, {flush: true, at: 65}},
			[]Frame{{Bits: []byte{1, 1, 1}, At: ms(0)}}},
		{"same instant", []in{{1, 5, false}, {0, 5, false}, {flush: true, at: 30}},
			[]Frame{{Bits: []byte{1, 0}, At: ms(5)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := NewFramer(25 * time.Millisecond)
			var got []Frame
			for _, i := range tt.ins {
				var (
					fr Frame
					ok bool
				)
				if i.flush {
					fr, ok = f.Flush(ms(i.at))
				} else {
					fr, ok = f.Add(i.bit, ms(i.at))
				}
				if ok {
					got = append(got, fr)
				}
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestFramerCapsLongBursts(t *testing.T) {
	t0 := time.Date(2024, 5, 1, 8, 0, 0, 0, time.UTC)
	f := NewFramer(time.Millisecond)
	for range 1000 {
		f.Add(1, t0)
	}
	fr, ok := f.Flush(t0.Add(time.Millisecond))
	if !ok || len(fr.Bits) != MaxFrameBits+1 {
		t.Fatalf("Flush = %d bits, %v; want %d", len(fr.Bits), ok, MaxFrameBits+1)
	}
	if _, err := Decode(fr.Bits); err == nil {
		t.Error("a capped burst decoded")
	}
	if dl, ok := f.Deadline(); ok {
		t.Errorf("Deadline after flush = %v, want none", dl)
	}
}
