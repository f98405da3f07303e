package wire

import (
	"bytes"
	"errors"
	"testing"

	"linli/shared/event"
)

func TestParseTopic(t *testing.T) {
	tests := []struct {
		topic              string
		site, device, leaf string
		ok                 bool
	}{
		{"linli/v1/s1/kiosk-1/up", "s1", "kiosk-1", "up", true},
		{"linli/v1/s1/all/down", "s1", "all", "down", true},
		{"linli/v1/s1/kiosk-1/status", "s1", "kiosk-1", "status", true},
		{"linli/v1/s1/kiosk-1/other", "", "", "", false},
		{"linli/v1/s1/+/up", "", "", "", false},
		{"linli/v1/s1/#", "", "", "", false},
		{"linli/v1/s1/a/b/up", "", "", "", false},
		{"other/v1/s1/k/up", "", "", "", false},
		{"linli/v1//k/up", "", "", "", false},
	}
	for _, tt := range tests {
		s, d, l, err := ParseTopic(tt.topic)
		if (err == nil) != tt.ok || s != tt.site || d != tt.device || l != tt.leaf {
			t.Errorf("ParseTopic(%q) = %q %q %q %v; want %q %q %q ok=%v", tt.topic, s, d, l, err, tt.site, tt.device, tt.leaf, tt.ok)
		}
	}
	if got := Topic("s1", "k1", LeafAck); got != "linli/v1/s1/k1/ack" {
		t.Errorf("Topic = %q", got)
	}
}

func sampleEvents(t testing.TB, from, n int) []event.Event {
	t.Helper()
	out := make([]event.Event, 0, n)
	for i := range n {
		ev, err := event.NewEvent("", uint64(from+i), 1000, &event.Checkin{Resident: "R1", Activity: "A7", Action: "in"})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ev)
	}
	return out
}

func TestBatchRoundTrip(t *testing.T) {
	for _, compress := range []bool{false, true} {
		evs := sampleEvents(t, 10, 50)
		b, err := NewBatch(10, 59, evs, compress, 7)
		if err != nil {
			t.Fatal(err)
		}
		data, err := Encode(Up{Batch: b})
		if err != nil {
			t.Fatal(err)
		}
		up, err := DecodeUp(data)
		if err != nil {
			t.Fatal(err)
		}
		got, err := up.Batch.Open("kiosk-1")
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 50 || got[0].Seq != 10 || got[49].Seq != 59 || got[3].Device != "kiosk-1" {
			t.Fatalf("compress=%v: got %d events, first %+v", compress, len(got), got[0])
		}
		if compress && up.Batch.Codec != CodecZstd {
			t.Fatal("compressed batch not marked zstd")
		}
	}
}

func TestBatchOpenRejects(t *testing.T) {
	evs := sampleEvents(t, 1, 3)
	other := sampleEvents(t, 2, 1)
	other[0].Device = "intruder"
	tests := []struct {
		name string
		b    Batch
	}{
		{"zero from", Batch{From: 0, To: 3, Events: evs}},
		{"inverted range", Batch{From: 3, To: 1, Events: evs}},
		{"event outside range", Batch{From: 2, To: 3, Events: evs}},
		{"unordered", Batch{From: 1, To: 3, Events: []event.Event{evs[1], evs[0]}}},
		{"duplicate seq", Batch{From: 1, To: 3, Events: []event.Event{evs[0], evs[0]}}},
		{"other device", Batch{From: 1, To: 3, Events: other}},
		{"unknown codec", Batch{From: 1, To: 3, Codec: 9}},
		{"bad zstd", Batch{From: 1, To: 3, Codec: CodecZstd, Payload: []byte("nope")}},
		{"priority with holes", Batch{From: 1, To: 5, Events: evs, Priority: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tt.b.Open("kiosk-1"); !errors.Is(err, ErrBadBatch) {
				t.Fatalf("Open = %v, want ErrBadBatch", err)
			}
		})
	}
}

func TestDecodeUpNeedsExactlyOne(t *testing.T) {
	for _, u := range []Up{{}, {Hello: &Hello{}, Batch: &Batch{}}} {
		data, _ := Encode(u)
		if _, err := DecodeUp(data); err == nil {
			t.Errorf("DecodeUp(%+v) succeeded", u)
		}
	}
}

func FuzzDecodeUp(f *testing.F) {
	b, _ := NewBatch(1, 8, sampleEvents(f, 1, 8), true, 3)
	data, _ := Encode(Up{Batch: b})
	f.Add(data)
	h, _ := Encode(Up{Hello: &Hello{Role: "kiosk", LastSeq: 9}})
	f.Add(h)
	f.Fuzz(func(t *testing.T, data []byte) {
		up, err := DecodeUp(data)
		if err != nil || up.Batch == nil {
			return
		}
		evs, encoded, err := up.Batch.OpenRaw("k1")
		if err != nil {
			return
		}
		for i, e := range evs {
			if encoded[i] != nil {
				// What the hub stores must read back as the event it merged.
				var back event.Event
				if err := event.Unmarshal(encoded[i], &back); err != nil || back.Seq != e.Seq || back.Kind != e.Kind || !bytes.Equal(back.Body, e.Body) {
					t.Fatalf("stored encoding %x reads back as %+v (%v), want %+v", encoded[i], back, err, e)
				}
			}
			if e.Seq < up.Batch.From || e.Seq > up.Batch.To || e.Device != "k1" {
				t.Fatalf("Open let through %+v for [%d,%d]", e, up.Batch.From, up.Batch.To)
			}
			if err := e.Validate(); err != nil {
				continue // refused cleanly: that is all a bad body may do
			}
		}
	})
}

func FuzzDecodeDown(f *testing.F) {
	ok, _ := Encode(Down{Site: "s1", Prev: 1, Last: 3, Changes: []Change{{Seq: 2, Entity: EntityNotice, ID: "n1", Body: []byte{0x60}}}})
	f.Add(ok)
	f.Add([]byte{0xa0})
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := DecodeDown(data)
		if err != nil {
			return
		}
		// What decodes is well formed: changes inside (Prev, Last], ordered.
		var prev uint64
		for _, c := range d.Changes {
			if c.Seq <= d.Prev || c.Seq > d.Last || c.Seq <= prev || c.Entity == "" || c.ID == "" {
				t.Fatalf("DecodeDown let through %+v in (%d, %d]", c, d.Prev, d.Last)
			}
			prev = c.Seq
		}
	})
}
