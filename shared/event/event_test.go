package event

import (
	"bytes"
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"

	"pgregory.net/rapid"

	"linli/shared/hlc"
)

func TestValidate(t *testing.T) {
	long := strings.Repeat("x", 121)
	tests := []struct {
		name  string
		body  Body
		field string // "" means valid
	}{
		{"checkin ok", &Checkin{Resident: "R123", Activity: "A7", Action: "in"}, ""},
		{"checkin out", &Checkin{Resident: "R123", Activity: "A7", Action: "out", Status: StatusRecorded}, ""},
		{"checkin no resident", &Checkin{Activity: "A7", Action: "in"}, "resident"},
		{"checkin bad action", &Checkin{Resident: "R1", Activity: "A7", Action: "sideways"}, "action"},
		{"checkin bad status", &Checkin{Resident: "R1", Activity: "A7", Action: "in", Status: "maybe"}, "status"},
		{"checkin odd id", &Checkin{Resident: "R 1", Activity: "A7", Action: "in"}, "resident"},
		{"report ok", &Report{Category: "fire_safety", Title: "楼道堆物", Building: "B3", Unit: "1-402"}, ""},
		{"report anonymous", &Report{Category: "noise", Title: "t", Building: "B3"}, ""},
		{"report bad category", &Report{Category: "aliens", Title: "t", Building: "B3"}, "category"},
		{"report empty title", &Report{Category: "noise", Building: "B3"}, "title"},
		{"report long title", &Report{Category: "noise", Title: long, Building: "B3"}, "title"},
		{"report control chars", &Report{Category: "noise", Title: "a\x00b", Building: "B3"}, "title"},
		{"report no building", &Report{Category: "noise", Title: "t"}, "building"},
		{"vote ok", &Vote{Report: "kiosk-1.42", Resident: "R9"}, ""},
		{"vote bad report", &Vote{Report: "a/b", Resident: "R9"}, "report"},
		{"rating ok", &Rating{Resident: "R1", Target: "kiosk-1.42", Score: 5}, ""},
		{"rating zero", &Rating{Resident: "R1", Target: "A7", Score: 0}, "score"},
		{"rating six", &Rating{Resident: "R1", Target: "A7", Score: 6}, "score"},
		{"access ok", &Access{Door: "B3-main", Credential: "C42", Result: "granted"}, ""},
		{"access bad result", &Access{Door: "B3-main", Result: "maybe"}, "result"},
		{"reading ok", &Reading{Sensor: "B3-t-1", Type: "temperature", Value: 21.5}, ""},
		{"reading smoke 1", &Reading{Sensor: "B3-smoke-1", Type: "smoke", Value: 1}, ""},
		{"reading smoke 2", &Reading{Sensor: "B3-smoke-1", Type: "smoke", Value: 2}, "value"},
		{"reading NaN", &Reading{Sensor: "s", Type: "humidity", Value: math.NaN()}, "value"},
		{"reading hot", &Reading{Sensor: "s", Type: "temperature", Value: 500}, "value"},
		{"reading kind", &Reading{Sensor: "s", Type: "radiation", Value: 1}, "kind"},
		{"alarm ok", &Alarm{Sensor: "B3-smoke-1", Type: "smoke", Active: true}, ""},
		{"gap ok", &Gap{Dropped: 3, FirstSeq: 4, LastSeq: 9, Reason: "disk reserve"}, ""},
		{"gap empty", &Gap{Reason: "x"}, "dropped"},
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

func TestEventRoundTrip(t *testing.T) {
	body := &Report{Category: "elevator", Title: "电梯停运", Building: "B1", Resident: "R7"}
	ev, err := NewEvent("kiosk-1", 42, hlc.New(1_700_000_000_000, 3), body)
	if err != nil {
		t.Fatal(err)
	}
	data, err := ev.Encode()
	if err != nil {
		t.Fatal(err)
	}
	back, err := DecodeEvent(data)
	if err != nil {
		t.Fatal(err)
	}
	if err := back.Validate(); err != nil {
		t.Fatalf("Validate() = %v", err)
	}
	got, err := back.Decode()
	if err != nil {
		t.Fatal(err)
	}
	if *got.(*Report) != *body || back.ID() != "kiosk-1.42" || back.HLC != ev.HLC {
		t.Fatalf("round trip: got %+v %+v", back, got)
	}
	again, _ := back.Encode()
	if !bytes.Equal(again, data) {
		t.Fatal("re-encoding changed the bytes: encoding is not deterministic")
	}
}

func TestDecodeRejects(t *testing.T) {
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"not a map", []byte{0x01}},
		{"duplicate key", []byte{0xa2, 0x02, 0x01, 0x02, 0x02}},
		{"indefinite length", []byte{0xbf, 0x02, 0x01, 0xff}},
		{"truncated", []byte{0xa1, 0x02}},
		{"too large", make([]byte, MaxMessage+1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := DecodeEvent(tt.data); err == nil {
				t.Fatal("DecodeEvent succeeded, want error")
			}
		})
	}
	deep := bytes.Repeat([]byte{0x81}, 40) // 40 nested arrays
	var v any
	if err := Unmarshal(append(deep, 0x01), &v); err == nil {
		t.Fatal("40 levels of nesting decoded, want a depth error")
	}
}

func TestParseID(t *testing.T) {
	tests := []struct {
		in     string
		device string
		seq    uint64
		ok     bool
	}{
		{"kiosk-1.42", "kiosk-1", 42, true},
		{"a.b.7", "", 0, false},
		{"kiosk-1.0", "", 0, false},
		{"kiosk-1", "", 0, false},
		{".5", "", 0, false},
		{"k.x", "", 0, false},
	}
	for _, tt := range tests {
		d, s, err := ParseID(tt.in)
		if (err == nil) != tt.ok || d != tt.device || s != tt.seq {
			t.Errorf("ParseID(%q) = %q, %d, %v; want %q, %d, ok=%v", tt.in, d, s, err, tt.device, tt.seq, tt.ok)
		}
	}
}

func TestCodecProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		body := &Rating{
			Resident: rapid.StringMatching(`R[0-9]{1,6}`).Draw(t, "resident"),
			Target:   rapid.StringMatching(`[a-z]{1,8}\.[1-9][0-9]{0,5}`).Draw(t, "target"),
			Score:    rapid.IntRange(1, 5).Draw(t, "score"),
			Comment:  rapid.StringN(0, 100, -1).Draw(t, "comment"),
		}
		ev, err := NewEvent("k1", rapid.Uint64Range(1, 1<<40).Draw(t, "seq"), hlc.Timestamp(rapid.Uint64().Draw(t, "hlc")), body)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := ev.Encode()
		back, err := DecodeEvent(data)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeBody(back.Kind, back.Body)
		if body.Validate() != nil {
			return // rapid strings may hold control characters; then decode must refuse too
		}
		if err != nil || *got.(*Rating) != *body {
			t.Fatalf("got %+v, %v; want %+v", got, err, body)
		}
	})
}

func FuzzDecodeEvent(f *testing.F) {
	ev, _ := NewEvent("k1", 1, 5, &Vote{Report: "k2.3", Resident: "R1"})
	data, _ := ev.Encode()
	f.Add(data)
	f.Add([]byte{0xa0})
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, err := DecodeEvent(data)
		if err != nil {
			return
		}
		if ev.Validate() != nil {
			return
		}
		// A valid event must survive a round trip unchanged.
		again, err := ev.Encode()
		if err != nil {
			t.Fatalf("re-encode valid event: %v", err)
		}
		back, err := DecodeEvent(again)
		if err != nil || back.Seq != ev.Seq || back.Device != ev.Device || !bytes.Equal(back.Body, ev.Body) {
			t.Fatalf("round trip changed the event: %+v vs %+v (%v)", back, ev, err)
		}
	})
}

// Outside input keeps its element limits; Linli's own data (stores, the
// hub's downlink) is bounded by MaxMessage alone.
func TestUnmarshalLimits(t *testing.T) {
	big := make([]string, 1<<17+1)
	for i := range big {
		big[i] = "R" + strconv.Itoa(i)
	}
	data, err := Marshal(big)
	if err != nil {
		t.Fatal(err)
	}
	tooLarge := make([]byte, MaxMessage+1)
	for _, c := range []struct {
		name     string
		decode   func([]byte, any) error
		data     []byte
		wantErr  bool
		wantSize int
	}{
		{"outside input: 131,073 elements", Unmarshal, data, true, 0},
		{"own data: 131,073 elements", UnmarshalOwn, data, false, len(big)},
		{"own data over MaxMessage", UnmarshalOwn, tooLarge, true, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			var got []string
			err := c.decode(c.data, &got)
			if (err != nil) != c.wantErr || len(got) != c.wantSize {
				t.Fatalf("decoded %d elements, err %v; want %d, error %v", len(got), err, c.wantSize, c.wantErr)
			}
		})
	}
}
