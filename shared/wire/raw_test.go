package wire

import (
	"bytes"
	"reflect"
	"testing"

	"linli/shared/event"
)

// rawBuffer is what the uplink hands NewBatchRaw: BatchRawRoom spare bytes,
// then the events' stored encodings.
func rawBuffer(t *testing.T, evs []event.Event) []byte {
	t.Helper()
	raw := make([]byte, BatchRawRoom)
	for i := range evs {
		data, err := evs[i].Encode()
		if err != nil {
			t.Fatal(err)
		}
		raw = append(raw, data...)
	}
	return raw
}

// A batch built from stored encodings is byte for byte the batch built
// from the decoded events, for every size class of the CBOR array head.
func TestNewBatchRawMatchesNewBatch(t *testing.T) {
	for _, n := range []int{1, 3, 4, 23, 24, 255, 256, 500, 65535, 65536} {
		evs := sampleEvents(t, 1, n)
		raw := rawBuffer(t, evs)
		for _, compress := range []bool{false, true} {
			want, err := NewBatch(1, uint64(n), evs, compress, 7)
			if err != nil {
				t.Fatal(err)
			}
			got, err := NewBatchRaw(1, uint64(n), n, raw, compress, 7)
			if err != nil {
				t.Fatalf("n=%d compress=%v: %v", n, compress, err)
			}
			wantMsg, err1 := Encode(Up{Batch: want})
			gotMsg, err2 := Encode(Up{Batch: got})
			if err1 != nil || err2 != nil {
				t.Fatal(err1, err2)
			}
			if !bytes.Equal(gotMsg, wantMsg) {
				t.Fatalf("n=%d compress=%v: raw batch differs from NewBatch's (%d vs %d bytes)", n, compress, len(gotMsg), len(wantMsg))
			}
			opened, err := got.Open("gw-1")
			if err != nil || len(opened) != n {
				t.Fatalf("n=%d compress=%v: Open = %d events, %v", n, compress, len(opened), err)
			}
		}
	}
}

func TestAppendArrayHeader(t *testing.T) {
	for _, n := range []int{0, 1, 23, 24, 255, 256, 65535, 65536, 1 << 20} {
		want, err := event.Marshal(make([]struct{}, n))
		if err != nil {
			t.Fatal(err)
		}
		got := appendArrayHeader(nil, n)
		if !reflect.DeepEqual(got, want[:len(got)]) {
			t.Errorf("appendArrayHeader(%d) = %x, want %x", n, got, want[:len(got)])
		}
	}
}

// A count that does not match the encodings is refused, not sent.
func TestNewBatchRawCountMismatch(t *testing.T) {
	evs := sampleEvents(t, 1, 2)
	raw := rawBuffer(t, evs)
	if _, err := NewBatchRaw(1, 2, 3, raw, false, 0); err == nil {
		t.Fatal("3 announced, 2 encoded: want an error")
	}
	if _, err := NewBatchRaw(1, 2, 2, raw[BatchRawRoom-1:], false, 0); err == nil {
		t.Fatal("no room for the array head: want an error")
	}
}

// The caller may reuse the buffer at once: a batch keeps no reference to
// it, compressed or not.
func TestNewBatchRawKeepsNoBuffer(t *testing.T) {
	for _, n := range []int{2, 300} { // 2: too small to compress
		evs := sampleEvents(t, 1, n)
		buf := rawBuffer(t, evs)
		b, err := NewBatchRaw(1, uint64(n), n, buf, true, 7)
		if err != nil {
			t.Fatal(err)
		}
		before, err := Encode(Up{Batch: b})
		if err != nil {
			t.Fatal(err)
		}
		for i := range buf {
			buf[i] = 0xff
		}
		after, err := Encode(Up{Batch: b})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(before, after) {
			t.Fatalf("n=%d: the batch changed when its buffer was reused", n)
		}
		if got, err := b.Open("gw-1"); err != nil || len(got) != n {
			t.Fatalf("n=%d: Open after reuse = %d events, %v", n, len(got), err)
		}
	}
}

// OpenRaw hands back, for a compressed batch, each event's encoding as the
// edge stored it, so the hub keeps exactly the signed bytes; an
// uncompressed batch leaves them for the caller to encode.
func TestOpenRawKeepsStoredEncodings(t *testing.T) {
	for _, n := range []int{1, 24, 300} { // 1: too small to compress
		for _, compress := range []bool{false, true} {
			evs := sampleEvents(t, 1, n) // fresh: Open names the device in place
			b, err := NewBatch(1, uint64(n), evs, compress, 7)
			if err != nil {
				t.Fatal(err)
			}
			got, encoded, err := b.OpenRaw("kiosk-1")
			if err != nil || len(got) != n || len(encoded) != n {
				t.Fatalf("n=%d compress=%v: OpenRaw = %d events, %d encodings, %v", n, compress, len(got), len(encoded), err)
			}
			for i := range got {
				if b.Codec != CodecZstd {
					if encoded[i] != nil {
						t.Fatalf("uncompressed batch returned an encoding for event %d", i)
					}
					continue
				}
				stored := got[i]
				stored.Device = ""
				want, err := stored.Encode()
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(encoded[i], want) {
					t.Fatalf("n=%d event %d: encoding %x, want %x", n, i, encoded[i], want)
				}
			}
		}
	}
}

func TestUnmarshalArrayRejects(t *testing.T) {
	one, err := sampleEvents(t, 1, 1)[0].Encode()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"not an array", one},
		{"short array", append([]byte{0x82}, one...)},
		{"trailing bytes", append(append([]byte{0x81}, one...), 0x00)},
		{"truncated head", []byte{0x99, 0x01}},
		{"indefinite", append(append([]byte{0x9f}, one...), 0xff)},
		{"huge count", []byte{0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := event.UnmarshalArray(tt.data); err == nil {
				t.Fatal("UnmarshalArray accepted it")
			}
		})
	}
}
