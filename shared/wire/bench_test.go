package wire

import (
	"fmt"
	"testing"

	"linli/shared/event"
	"linli/shared/hlc"
)

// benchBatch is 500 events of a gateway's mix, as the uplink packs them.
func benchBatch(b *testing.B) []event.Event {
	b.Helper()
	out := make([]event.Event, 0, 500)
	for i := range 500 {
		var body event.Body
		switch i % 4 {
		case 0, 1:
			body = &event.Access{Door: fmt.Sprintf("B%d-main", 1+i%6), Credential: fmt.Sprintf("h:%016x", uint64(i*2654435761)%(1<<40)),
				Result: "granted", Building: "B1"}
		case 2:
			body = &event.Reading{Sensor: fmt.Sprintf("B1-t-%d", i%8), Type: "temperature", Value: 18 + float64(i%90)/10, Building: "B1"}
		default:
			body = &event.Checkin{Resident: fmt.Sprintf("R%d", 1000+i*7919%5000), Activity: fmt.Sprintf("A%d", i%3), Action: "in",
				Status: event.StatusRecorded}
		}
		ev, err := event.NewEvent("", uint64(i+1), hlc.Timestamp(117679436238684160+uint64(i)*1_000_003), body)
		if err != nil {
			b.Fatal(err)
		}
		out = append(out, ev)
	}
	return out
}

// BenchmarkNewBatch packs and compresses 500 events (the edge, per batch).
func BenchmarkNewBatch(b *testing.B) {
	evs := benchBatch(b)
	b.ReportAllocs()
	var size int
	for b.Loop() {
		bt, err := NewBatch(1, 500, evs, true, 1)
		if err != nil {
			b.Fatal(err)
		}
		size = len(bt.Payload)
	}
	b.ReportMetric(float64(size)/500, "bytes/event")
	b.ReportMetric(float64(b.N*500)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkBatchOpen decodes an up message holding a compressed batch of
// 500 events and opens it (the hub, per batch).
func BenchmarkBatchOpen(b *testing.B) { benchOpen(b, false) }

// BenchmarkBatchOpenRaw is the hub's path: the events and their stored
// encodings.
func BenchmarkBatchOpenRaw(b *testing.B) { benchOpen(b, true) }

func benchOpen(b *testing.B, raw bool) {
	bt, err := NewBatch(1, 500, benchBatch(b), true, 1)
	if err != nil {
		b.Fatal(err)
	}
	data, err := Encode(Up{Batch: bt})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		up, err := DecodeUp(data)
		if err != nil {
			b.Fatal(err)
		}
		if raw {
			_, _, err = up.Batch.OpenRaw("gw-1")
		} else {
			_, err = up.Batch.Open("gw-1")
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*500)/b.Elapsed().Seconds(), "events/s")
}
