package event

import (
	"bytes"
	"reflect"
	"testing"

	"pgregory.net/rapid"

	"linli/shared/hlc"
)

// sameAsDecoder checks decodeEnvelope against the reflecting decoder on
// data: whatever it takes, decMode must take with the same event and the
// same rest.
func sameAsDecoder(t interface{ Fatalf(string, ...any) }, data []byte) (fast bool) {
	var got Event
	rest, ok := decodeEnvelope(data, &got)
	if !ok {
		return false
	}
	var want Event
	left, err := decMode.UnmarshalFirst(data, &want)
	if err != nil {
		t.Fatalf("decodeEnvelope took % x, which the decoder refuses: %v", data, err)
	}
	if !reflect.DeepEqual(got, want) || !bytes.Equal(rest, left) {
		t.Fatalf("% x: decodeEnvelope gave %+v and %d bytes after, the decoder %+v and %d", data, got, len(rest), want, len(left))
	}
	return true
}

func TestDecodeEnvelopeMatchesDecoder(t *testing.T) {
	vote, _ := NewEvent("", 7, 9, &Vote{Report: "k2.3", Resident: "R1"})
	own, _ := vote.Encode()
	withDevice := vote
	withDevice.Device = "gw-b3"
	dev, _ := withDevice.Encode()
	tests := []struct {
		name string
		data []byte
		fast bool // decodeEnvelope takes it (else the decoder decides)
	}{
		{"as encoded, device left out", own, true},
		{"as encoded, with device", dev, true},
		{"followed by more", append(append([]byte{}, own...), 0x01, 0x02), true},
		{"empty map", []byte{0xa0}, true},
		{"non-minimal seq", []byte{0xa1, 0x02, 0x1b, 0, 0, 0, 0, 0, 0, 0, 7}, true},
		{"keys out of order", []byte{0xa2, 0x03, 0x01, 0x02, 0x01}, false},
		{"duplicate key", []byte{0xa2, 0x02, 0x01, 0x02, 0x02}, false},
		{"unknown key", []byte{0xa1, 0x06, 0x01}, false},
		{"text key", []byte{0xa1, 0x61, '2', 0x01}, false},
		{"kind over 255", []byte{0xa1, 0x04, 0x19, 0x01, 0x00}, false},
		{"negative seq", []byte{0xa1, 0x02, 0x20}, false},
		{"device not text", []byte{0xa1, 0x01, 0x41, 'k'}, false},
		{"device invalid utf-8", []byte{0xa1, 0x01, 0x62, 0xff, 0xfe}, false},
		{"device truncated", []byte{0xa1, 0x01, 0x65, 'k'}, false},
		{"tag in body", []byte{0xa1, 0x05, 0xc1, 0x01}, false},
		{"indefinite body", []byte{0xa1, 0x05, 0x9f, 0xff}, false},
		{"undefined in body", []byte{0xa1, 0x05, 0xf7}, false},
		{"two-byte simple in body", []byte{0xa1, 0x05, 0xf8, 0x20}, false},
		{"body truncated", []byte{0xa1, 0x05, 0x82, 0x01}, false},
		{"deep body", append([]byte{0xa1, 0x05}, append(bytes.Repeat([]byte{0x81}, 12), 0x01)...), false},
		{"floats and null in body", []byte{0xa1, 0x05, 0x84, 0xf9, 0x3c, 0x00, 0xfa, 0, 0, 0, 0, 0xfb, 0, 0, 0, 0, 0, 0, 0, 0, 0xf6}, true},
		{"indefinite map", []byte{0xbf, 0x02, 0x01, 0xff}, false},
		{"not a map", []byte{0x82, 0x01, 0x02}, false},
		{"nothing", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if fast := sameAsDecoder(t, tt.data); fast != tt.fast {
				t.Errorf("decodeEnvelope took it: %v, want %v", fast, tt.fast)
			}
		})
	}
}

// Every event Linli encodes takes the fast path, with the decoder's result.
func TestDecodeEnvelopeTakesOwnEvents(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		body := &Report{
			Category: rapid.SampledFrom([]string{"facilities", "fire_safety", "noise"}).Draw(t, "category"),
			Title:    rapid.StringN(1, 40, -1).Draw(t, "title"),
			Building: rapid.StringMatching(`B[0-9]{1,2}`).Draw(t, "building"),
			Resident: rapid.StringMatching(`R[0-9]{1,6}`).Draw(t, "resident"),
		}
		device := rapid.SampledFrom([]string{"", "k1", "gw-b3"}).Draw(t, "device")
		ev, err := NewEvent(device, rapid.Uint64Range(1, 1<<62).Draw(t, "seq"), hlc.Timestamp(rapid.Uint64().Draw(t, "hlc")), body)
		if err != nil {
			t.Fatal(err)
		}
		data, err := ev.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if !sameAsDecoder(t, data) {
			t.Fatalf("% x: an event as Linli encodes it missed the fast path", data)
		}
	})
}

func FuzzDecodeEnvelope(f *testing.F) {
	ev, _ := NewEvent("k1", 1, 5, &Vote{Report: "k2.3", Resident: "R1"})
	data, _ := ev.Encode()
	f.Add(data)
	f.Add([]byte{0xa1, 0x05, 0x84, 0xf9, 0x3c, 0x00, 0xfa, 0, 0, 0, 0, 0xfb, 0, 0, 0, 0, 0, 0, 0, 0, 0xf6})
	f.Fuzz(func(t *testing.T, data []byte) { sameAsDecoder(t, data) })
}
