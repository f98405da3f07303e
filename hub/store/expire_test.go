package store

import (
	"fmt"
	"log/slog"
	"testing"
	"time"

	"linli/shared/event"
	"linli/shared/hlc"
	"linli/shared/kv"
)

// Expire deletes, in transactions of at most Batch deletions, exactly the
// events of the expiring kinds older than their cut-off that Keep does not
// hold, across sites and devices; the device records and every other event
// stay, and a stop between batches ends it with what it did so far.
func TestExpireDeletesOnlyExpiredEvents(t *testing.T) {
	s, err := Open(t.TempDir(), kv.Small, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	cut := now.Add(-90 * 24 * time.Hour)
	b := s.NewBatch()
	want := map[string]bool{} // site/device/seq that must stay
	for _, site := range []string{"s1", "s2"} {
		for _, dev := range []string{"gw-1", "gw-2"} {
			for seq := uint64(1); seq <= 50; seq++ {
				at := now.Add(-time.Duration(seq*4) * 24 * time.Hour) // seq 23 and up are older than the cut
				var body event.Body = &event.Reading{Sensor: "T1", Type: "temperature", Value: float64(seq)}
				switch seq % 5 {
				case 1:
					body = &event.Report{Category: "noise", Title: "r", Building: "B1"}
				case 2:
					body = &event.Access{Door: "B1-main", Result: "forced"}
				}
				ev, err := event.NewEvent(dev, seq, hlc.FromTime(at), body)
				if err != nil {
					t.Fatal(err)
				}
				enc, err := ev.Encode()
				if err != nil {
					t.Fatal(err)
				}
				b.PutEvent(site, &ev, enc)
				keep := !at.Before(cut) || ev.Kind == event.KindReport || ev.Kind == event.KindAccess
				want[fmt.Sprintf("%s/%s/%d", site, dev, seq)] = keep
			}
			b.PutDevice(&DeviceRecord{ID: dev, Site: site, Acked: 50, Received: 50})
		}
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	e := Expiry{Before: map[event.Kind]time.Time{event.KindReading: cut, event.KindAccess: cut},
		Keep: func(_ string, ev *event.Event) bool { return ev.Kind == event.KindAccess }, Batch: 7}

	// Stopped after the first batch: at most Batch deleted.
	batches := 0
	n, err := s.Expire(e, func() bool { batches++; return batches > 1 })
	if err != nil || n[event.KindReading] != 7 {
		t.Fatalf("stopped pass deleted %v (%v), want one batch of 7", n, err)
	}
	n, err = s.Expire(e, nil)
	if err != nil {
		t.Fatal(err)
	}
	expired := 0
	for _, keep := range want {
		if !keep {
			expired++
		}
	}
	if n[event.KindReading]+7 != expired || n[event.KindAccess] != 0 || len(n) != 1 {
		t.Fatalf("deleted %v after the first 7, want %d readings in all and nothing else", n, expired)
	}
	for _, site := range []string{"s1", "s2"} {
		for _, dev := range []string{"gw-1", "gw-2"} {
			evs, err := s.Events(site, dev, 0, 100)
			if err != nil {
				t.Fatal(err)
			}
			got := map[uint64]bool{}
			for _, ev := range evs {
				got[ev.Seq] = true
			}
			for seq := uint64(1); seq <= 50; seq++ {
				if k := want[fmt.Sprintf("%s/%s/%d", site, dev, seq)]; got[seq] != k {
					t.Fatalf("%s/%s seq %d stored %v, want %v", site, dev, seq, got[seq], k)
				}
			}
		}
	}
	recs, err := s.Devices()
	if err != nil || len(recs) != 4 {
		t.Fatalf("device records %v (%v)", recs, err)
	}
	for _, d := range recs {
		if d.Acked != 50 || d.Received != 50 {
			t.Fatalf("device record %+v moved", d)
		}
	}
}

// A pass reads at most Scan events per transaction, so a stop is heeded
// within that many events however few of them have expired: a pass over
// years of events it keeps used to read them all in one transaction
// before it looked at stop again.
func TestExpireStopsWithinScan(t *testing.T) {
	s, err := Open(t.TempDir(), kv.Small, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	cut := now.Add(-90 * 24 * time.Hour)
	b := s.NewBatch()
	put := func(dev string, n int, at time.Time) {
		for seq := uint64(1); seq <= uint64(n); seq++ {
			ev, err := event.NewEvent(dev, seq, hlc.FromTime(at), &event.Reading{Sensor: "T1", Type: "temperature", Value: 20})
			if err != nil {
				t.Fatal(err)
			}
			enc, err := ev.Encode()
			if err != nil {
				t.Fatal(err)
			}
			b.PutEvent("s1", &ev, enc)
		}
	}
	put("gw-1", 300, now)                   // kept: newer than the cut
	put("gw-2", 10, cut.Add(-24*time.Hour)) // expired, after gw-1's in key order
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	e := Expiry{Before: map[event.Kind]time.Time{event.KindReading: cut}, Batch: 5, Scan: 100}
	calls := 0
	n, err := s.Expire(e, func() bool { calls++; return calls > 1 })
	if err != nil || len(n) != 0 {
		t.Fatalf("a pass stopped after its first transaction deleted %v (%v), want nothing: it may read only 100 of the 300 kept events", n, err)
	}
	n, err = s.Expire(e, nil)
	if err != nil || n[event.KindReading] != 10 {
		t.Fatalf("the whole pass deleted %v (%v), want the 10 expired readings", n, err)
	}
}
