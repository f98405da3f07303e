package merge_test

import (
	"fmt"
	"testing"

	"linli/shared/event"
	"linli/shared/merge"
)

// mixedBatch is n facts as a busy site produces them: reports, votes,
// ratings, check-ins and check-outs over a few activities, alarms, and the
// hub's decisions.
func mixedBatch(b tb, n int) []merge.Fact {
	var facts []merge.Fact
	seqs := map[string]uint64{}
	add := func(device string, ms int64, body event.Body) {
		seqs[device]++
		facts = append(facts, fact(b, device, seqs[device], ms, body))
	}
	for a := range 5 {
		add("hub", 0, &event.ActivitySet{ID: fmt.Sprintf("A%d", a), Title: "t", Type: "activity", Site: site, Capacity: 100})
		for k := range 4 {
			add("hub", 1, &event.Grant{Activity: fmt.Sprintf("A%d", a), Kiosk: fmt.Sprintf("k%d", k), Seats: 20})
		}
	}
	for i := 0; len(facts) < n; i++ {
		kiosk := fmt.Sprintf("k%d", i%4)
		ms := int64(i * 1000)
		resident := fmt.Sprintf("R%d", i%300)
		switch i % 10 {
		case 0:
			add(kiosk, ms, &event.Report{Category: "noise", Title: "楼上装修", Building: "B1", Resident: resident})
		case 1, 2:
			add(kiosk, ms, &event.Vote{Report: fmt.Sprintf("k%d.%d", i%4, 1+i%7), Resident: resident})
		case 3:
			add(kiosk, ms, &event.Rating{Resident: resident, Target: fmt.Sprintf("A%d", i%5), Score: 1 + i%5})
		case 4, 5, 6:
			add(kiosk, ms, &event.Checkin{Resident: resident, Activity: fmt.Sprintf("A%d", i%5), Action: "in", Status: "confirmed"})
		case 7:
			add(kiosk, ms, &event.Checkin{Resident: resident, Activity: fmt.Sprintf("A%d", i%5), Action: "out"})
		case 8:
			add("g1", ms, &event.Alarm{Sensor: fmt.Sprintf("s%d", i%20), Type: "smoke", Active: i%3 != 0, Building: "B1"})
		case 9:
			add("hub", ms, &event.ReportPatch{Report: fmt.Sprintf("k%d.%d", i%4, 1+i%7), Status: "accepted", Note: "收到", Who: "op1"})
		}
	}
	return facts
}

// BenchmarkApply merges a batch of 1,000 mixed facts into a fresh state.
func BenchmarkApply(b *testing.B) {
	facts := mixedBatch(b, 1000)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		s := merge.New()
		for _, f := range facts {
			if _, err := s.Apply(f); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.N*len(facts))/b.Elapsed().Seconds(), "facts/s")
}

// BenchmarkApplyBatch merges the same 1,000 facts as one batch.
func BenchmarkApplyBatch(b *testing.B) {
	facts := mixedBatch(b, 1000)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := merge.New().ApplyBatch(facts); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(facts))/b.Elapsed().Seconds(), "facts/s")
}

// busyActivity is the snapshot of a state whose activity A1 has 2,000
// check-ins.
func busyActivity(b *testing.B) []byte {
	facts := []merge.Fact{fact(b, "hub", 1, 0, &event.ActivitySet{ID: "A1", Title: "t", Type: "activity", Site: site, Capacity: 3000})}
	for i := range 2000 {
		facts = append(facts, fact(b, "k1", uint64(i+1), int64(i), &event.Checkin{Resident: fmt.Sprintf("R%d", i), Activity: "A1",
			Action: "in", Status: "confirmed"}))
	}
	return encode(b, build(b, facts...))
}

func checkins(b *testing.B, n int) []merge.Fact {
	out := make([]merge.Fact, n)
	for i := range out {
		out[i] = fact(b, "k2", uint64(i+1), int64(5000+i), &event.Checkin{Resident: fmt.Sprintf("R%d", i), Activity: "A1",
			Action: "in", Status: "confirmed"})
	}
	return out
}

// BenchmarkApplyBusyActivity merges one more check-in into an activity that
// already has 2,000: the cost of recomputing an entity from its facts.
func BenchmarkApplyBusyActivity(b *testing.B) {
	snap, f := busyActivity(b), checkins(b, 1)[0]
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		s, err := merge.Decode(snap)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if _, err := s.Apply(f); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkApplyBatchBusyActivity merges a batch of 500 check-ins into an
// activity that already has 2,000: one recomputation per batch, where
// Apply would do 500.
func BenchmarkApplyBatchBusyActivity(b *testing.B) {
	snap, batch := busyActivity(b), checkins(b, 500)
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		s, err := merge.Decode(snap)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if _, err := s.ApplyBatch(batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "facts/s")
}

// BenchmarkEncode encodes the state of 5,000 mixed facts.
func BenchmarkEncode(b *testing.B) {
	s := build(b, mixedBatch(b, 5000)...)
	data := encode(b, s)
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := s.Encode(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSignupBatchesToABusyActivity merges batches of 5 sign-ups of
// new residents into an activity of 30,000, as the hub does while
// residents sign up at a kiosk: the refold per batch.
func BenchmarkSignupBatchesToABusyActivity(b *testing.B) {
	facts := []merge.Fact{fact(b, "hub", 1, 0, &event.ActivitySet{ID: "A1", Title: "t", Type: "activity", Site: site})}
	for i := range 30_000 {
		facts = append(facts, fact(b, "k1", uint64(i+1), int64(i), &event.Checkin{Resident: fmt.Sprintf("R%06d", 2*i), Activity: "A1",
			Action: "in", Status: "confirmed"}))
	}
	s := build(b, facts...)
	seq := uint64(0)
	b.ReportAllocs()
	for b.Loop() {
		batch := make([]merge.Fact, 5)
		for i := range batch {
			seq++
			batch[i] = fact(b, "k2", seq, int64(40_000+seq), &event.Checkin{Resident: fmt.Sprintf("R%06d", 60_000+int(seq)), Activity: "A1",
				Action: "in", Status: "confirmed"})
		}
		if _, err := s.ApplyBatch(batch); err != nil {
			b.Fatal(err)
		}
	}
}
