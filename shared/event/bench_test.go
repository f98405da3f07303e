package event

import "testing"

// benchBodies is a gateway's and a kiosk's typical mix: door decisions,
// readings, check-ins, a report and a vote.
func benchBodies() []Body {
	return []Body{
		&Access{Door: "B3-main", Credential: "h:3f9a0c17be42d5e8", Result: "granted", Building: "B3"},
		&Reading{Sensor: "B3-t-1", Type: "temperature", Value: 21.5, Building: "B3"},
		&Checkin{Resident: "R1234", Activity: "A7", Action: "in", Status: StatusRecorded},
		&Report{Category: "facilities", Title: "楼道灯不亮", Description: "3 单元 5 楼的灯坏了", Building: "B3", Unit: "1-502", Resident: "R1234"},
		&Vote{Report: "kiosk-b1.42", Resident: "R9"},
	}
}

func benchEvents(b *testing.B) []Event {
	b.Helper()
	var out []Event
	for i, body := range benchBodies() {
		ev, err := NewEvent("", uint64(i+1), 117679436238684160, body)
		if err != nil {
			b.Fatal(err)
		}
		out = append(out, ev)
	}
	return out
}

// BenchmarkEventEncode is the outbox's and the hub's per-event encoding.
func BenchmarkEventEncode(b *testing.B) {
	evs := benchEvents(b)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := evs[i%len(evs)].Encode(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeEvent decodes a stored envelope (the body stays raw).
func BenchmarkDecodeEvent(b *testing.B) {
	evs := benchEvents(b)
	raws := make([][]byte, len(evs))
	for i := range evs {
		var err error
		if raws[i], err = evs[i].Encode(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := DecodeEvent(raws[i%len(raws)]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeBody decodes and validates bodies, as the hub does for
// every event it receives.
func BenchmarkDecodeBody(b *testing.B) {
	evs := benchEvents(b)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := DecodeBody(evs[i%len(evs)].Kind, evs[i%len(evs)].Body); err != nil { // not Decode: it caches
			b.Fatal(err)
		}
	}
}

// BenchmarkBodyMarshal encodes bodies, as every edge write does.
func BenchmarkBodyMarshal(b *testing.B) {
	bodies := benchBodies()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := Marshal(bodies[i%len(bodies)]); err != nil {
			b.Fatal(err)
		}
	}
}
