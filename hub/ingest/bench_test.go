package ingest_test

import (
	"fmt"
	"log/slog"
	"syscall"
	"testing"
	"time"

	"linli/hub/store"
	"linli/shared/event"
	"linli/shared/hlc"
	"linli/shared/test/storetest"
	"linli/shared/wire"
)

// benchBatches encodes n events of a gateway's and kiosk's mix (door
// decisions, readings, check-ins, reports and votes) as compressed up
// messages of per events each.
func benchBatches(b *testing.B, device string, n, per int) [][]byte {
	b.Helper()
	var out [][]byte
	ts := hlc.FromTime(time.Now())
	for from := 1; from <= n; from += per {
		var evs []event.Event
		for seq := from; seq < from+per && seq <= n; seq++ {
			var body event.Body
			switch seq % 20 {
			case 0, 1, 2, 3, 4, 5, 6, 7:
				body = &event.Access{Door: fmt.Sprintf("B%d-main", 1+seq%6), Credential: fmt.Sprintf("h:%016x", uint64(seq*2654435761)%(1<<40)),
					Result: "granted", Building: "B1"}
			case 8, 9, 10, 11, 12:
				body = &event.Reading{Sensor: fmt.Sprintf("B1-t-%d", seq%8), Type: "temperature", Value: 18 + float64(seq%90)/10, Building: "B1"}
			case 13, 14, 15, 16:
				body = &event.Checkin{Resident: fmt.Sprintf("R%d", 1000+seq*7919%5000), Activity: fmt.Sprintf("A%d", seq/1000+seq%3),
					Action: "in", Status: event.StatusRecorded}
			case 17:
				body = &event.Report{Category: "facilities", Title: "楼道灯不亮", Building: "B1", Unit: "1-502", Resident: "R7"}
			case 18:
				body = &event.Vote{Report: event.FormatID(device, uint64(seq-1)), Resident: fmt.Sprintf("R%d", seq%300)}
			default:
				body = &event.Rating{Resident: fmt.Sprintf("R%d", seq%300), Target: fmt.Sprintf("A%d", seq/1000), Score: 1 + seq%5}
			}
			ev, err := event.NewEvent("", uint64(seq), ts+hlc.Timestamp(seq), body)
			if err != nil {
				b.Fatal(err)
			}
			evs = append(evs, ev)
		}
		bt, err := wire.NewBatch(evs[0].Seq, evs[len(evs)-1].Seq, evs, true, ts)
		if err != nil {
			b.Fatal(err)
		}
		msg, err := wire.Encode(wire.Up{Batch: bt})
		if err != nil {
			b.Fatal(err)
		}
		out = append(out, msg)
	}
	return out
}

// BenchmarkIngest measures the hub's receiving pipeline end to end in
// process: decode, dedupe, merge (with the state) and synced group commits
// into a real Badger or PostgreSQL, until the last event is acked. One op
// is one event; cpu-µs/event is the hub's (this process's) CPU, not the
// database server's.
func BenchmarkIngest(b *testing.B) {
	for _, impl := range storetest.Impls {
		for _, merged := range []bool{false, true} {
			name := impl.Name + "/store-only"
			if merged {
				name = impl.Name + "/with-state"
			}
			b.Run(name, func(b *testing.B) {
				st, _ := impl.Open(b, slog.New(slog.DiscardHandler))
				b.Cleanup(func() { st.Close() })
				benchIngest(b, st, merged)
			})
		}
	}
}

func benchIngest(b *testing.B, st store.Backend, merged bool) {
	tr := newTransport(false, make(chan wire.Ack, 1))
	runIngestOn(b, tr, st, merged, 0)
	const device = "gw-1"
	msgs := benchBatches(b, device, b.N, 500)
	topic := wire.Topic("s1", device, wire.LeafUp)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime(b)
	for _, m := range msgs {
		tr.deliver(topic, m)
	}
	for a := range tr.acks {
		if a.Acked >= uint64(b.N) {
			break
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(time.Microsecond)/float64(b.N), "cpu-µs/event")
}

// cpuTime is the CPU time the process has used, user and system.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
