package outbox

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"linli/shared/event"
)

func reading(i int) *event.Reading {
	return &event.Reading{Sensor: fmt.Sprintf("T%d", i), Type: "temperature", Value: 21}
}

// appendAll appends bodies in order and returns their seqs.
func appendAll(t *testing.T, l *Log, bodies ...event.Body) []uint64 {
	t.Helper()
	var seqs []uint64
	for _, b := range bodies {
		ev, err := l.Append(context.Background(), b)
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, ev.Seq)
	}
	return seqs
}

func TestDropTelemetryOldestFirstWithGap(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, nil)
	// seq: 1 R, 2 C, 3 R, 4 R, 5 C, 6 R, 7 R
	appendAll(t, l, reading(1), checkin(2), reading(3), reading(4), checkin(5), reading(6), reading(7))
	if err := l.Ack(1, false); err != nil { // the hub has seq 1: it is not "unacked telemetry"
		t.Fatal(err)
	}
	gapEv, gap, err := l.DropTelemetry(context.Background(), 3, "disk low: test")
	if err != nil {
		t.Fatal(err)
	}
	if gap.Dropped != 3 || gap.FirstSeq != 3 || gap.LastSeq != 6 || gap.Reason != "disk low: test" {
		t.Fatalf("gap = %+v, want 3 dropped from seq 3 to 6", gap)
	}
	if gapEv.Seq != 8 || gapEv.Kind != event.KindGap {
		t.Fatalf("gap event = seq %d kind %s, want seq 8 kind gap", gapEv.Seq, gapEv.Kind)
	}
	want := []uint64{2, 5, 7, 8}
	check := func(l *Log) {
		t.Helper()
		evs, err := l.Read(1, 100, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		var got []uint64
		for _, e := range evs {
			got = append(got, e.Seq)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("stored unacked seqs = %v, want %v", got, want)
		}
		if st := l.Stats(); st.Pending != uint64(len(want)) || st.LastSeq != want[len(want)-1] {
			t.Fatalf("stats = %+v, want %d pending, last seq %d", st, len(want), want[len(want)-1])
		}
	}
	check(l)
	// Dropped seqs are never reused.
	if seqs := appendAll(t, l, checkin(9)); seqs[0] != 9 {
		t.Fatalf("next append got seq %d, want 9", seqs[0])
	}
	want = append(want, 9)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = open(t, dir, nil)
	defer l.Close()
	check(l)
	body, err := func() (event.Body, error) {
		evs, err := l.Read(7, 1, 1<<20)
		if err != nil || len(evs) == 0 {
			return nil, fmt.Errorf("read gap: %v", err)
		}
		return evs[0].Decode()
	}()
	if err != nil {
		t.Fatal(err)
	}
	if g, ok := body.(*event.Gap); !ok || g.Dropped != 3 {
		t.Fatalf("seq 8 after reopen = %#v, want the gap", body)
	}
}

func TestDropTelemetryNeverDropsGovernance(t *testing.T) {
	l := open(t, t.TempDir(), nil)
	defer l.Close()
	appendAll(t, l, checkin(1), &event.Report{Category: "noise", Title: "loud", Building: "B1"},
		&event.Access{Door: "B1-main", Credential: "C1", Result: "forced"},
		&event.Alarm{Sensor: "S1", Type: "smoke", Active: true})
	_, _, err := l.DropTelemetry(context.Background(), 100, "disk low")
	if !errors.Is(err, ErrNothingToDrop) {
		t.Fatalf("DropTelemetry with no readings: %v, want ErrNothingToDrop", err)
	}
	if st := l.Stats(); st.LastSeq != 4 || st.Pending != 4 {
		t.Fatalf("stats after refused drop = %+v; nothing may be written", st)
	}
	for k := event.Kind(1); k < event.FirstHubKind; k++ {
		if Droppable(k) != (k == event.KindReading) {
			t.Errorf("Droppable(%s) = %v", k, Droppable(k))
		}
	}
}

func TestReclaimAckedIgnoresRetention(t *testing.T) {
	l := open(t, t.TempDir(), nil) // retention: one hour
	defer l.Close()
	appendAll(t, l, checkin(1), checkin(2), checkin(3), reading(4))
	if err := l.Ack(3, false); err != nil {
		t.Fatal(err)
	}
	if n, err := l.Prune(); err != nil || n != 0 {
		t.Fatalf("Prune inside retention = %d, %v; want 0", n, err)
	}
	n, err := l.ReclaimAcked(context.Background())
	if err != nil || n != 3 {
		t.Fatalf("ReclaimAcked = %d, %v; want 3", n, err)
	}
	evs, err := l.Read(0, 10, 1<<20)
	if err != nil || len(evs) != 1 || evs[0].Seq != 4 {
		t.Fatalf("after reclaim Read = %v, %v; want only seq 4", evs, err)
	}
}

// refuseGuard refuses every kind but gaps, as the disk guard does below
// its hard reserve.
type refuseGuard struct{ err error }

func (g refuseGuard) Admit(k event.Kind, _ int) error {
	if k == event.KindGap {
		return nil
	}
	return g.err
}

func TestGuardRefusalWritesNothing(t *testing.T) {
	l := open(t, t.TempDir(), nil)
	defer l.Close()
	appendAll(t, l, reading(1), reading(2))
	errFull := errors.New("disk reserve reached")
	l.SetGuard(refuseGuard{errFull})
	if _, err := l.Append(context.Background(), checkin(3)); !errors.Is(err, errFull) {
		t.Fatalf("append under a refusing guard: %v, want %v", err, errFull)
	}
	// Dropping still works below the reserve: the gap is admitted.
	if _, gap, err := l.DropTelemetry(context.Background(), 10, "disk low"); err != nil || gap.Dropped != 2 {
		t.Fatalf("drop under a refusing guard: %+v, %v", gap, err)
	}
	if st := l.Stats(); st.LastSeq != 3 || st.Pending != 1 {
		t.Fatalf("stats = %+v, want the gap alone at seq 3", st)
	}
}

func appendMany(t *testing.T, l *Log, n int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 16 {
				if _, err := l.Append(context.Background(), checkin(i)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func storedSeqs(t *testing.T, l *Log) []uint64 {
	t.Helper()
	evs, err := l.Read(0, 1<<20, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	seqs := make([]uint64, len(evs))
	for i, e := range evs {
		seqs[i] = e.Seq
	}
	return seqs
}

// Whole blocks of acked, expired events go by DropPrefix; nothing unacked
// or inside the retention window is touched.
func TestReclaimExpiredDropsWholeBlocks(t *testing.T) {
	blockBits = 8 // blocks of 256 seqs
	defer func() { blockBits = 16 }()
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	l := open(t, t.TempDir(), c) // retention: one hour
	defer l.Close()
	appendMany(t, l, 600)
	if err := l.Ack(550, false); err != nil {
		t.Fatal(err)
	}
	if n, err := l.ReclaimExpired(context.Background()); err != nil || n != 0 {
		t.Fatalf("inside the retention window ReclaimExpired = %d, %v; want 0", n, err)
	}
	c.add(2 * time.Hour)
	n, err := l.ReclaimExpired(context.Background())
	if err != nil || n != 511 {
		t.Fatalf("ReclaimExpired = %d, %v; want blocks 0 and 1 (seqs 1..511)", n, err)
	}
	if seqs := storedSeqs(t, l); len(seqs) != 89 || seqs[0] != 512 {
		t.Fatalf("after the drop %d events from %v, want 89 from 512", len(seqs), seqs[:1])
	}
	if n, err := l.Prune(); err != nil || n != 39 {
		t.Fatalf("Prune after the drop = %d, %v; want the 39 acked left (512..550)", n, err)
	}
	if st := l.Stats(); st.Pending != 50 || st.LastSeq != 600 {
		t.Fatalf("stats %+v, want 50 pending", st)
	}
	if ev, err := l.Append(context.Background(), checkin(601)); err != nil || ev.Seq != 601 {
		t.Fatalf("append after the drop: %+v %v", ev, err)
	}
}

func TestReclaimAckedDropsBlocksAndTheRest(t *testing.T) {
	blockBits = 8
	defer func() { blockBits = 16 }()
	l := open(t, t.TempDir(), nil)
	defer l.Close()
	appendMany(t, l, 600)
	if err := l.Ack(590, false); err != nil {
		t.Fatal(err)
	}
	n, err := l.ReclaimAcked(context.Background())
	if err != nil || n != 590 {
		t.Fatalf("ReclaimAcked = %d, %v; want 590", n, err)
	}
	if seqs := storedSeqs(t, l); len(seqs) != 10 || seqs[0] != 591 {
		t.Fatalf("left %v, want 591..600", seqs)
	}
}

// Regression (fault suite, long outage): deletions racing the ack cursor
// must not leave the pending count above zero once everything is acked.
func TestPendingExactWhileAckingAndReclaiming(t *testing.T) {
	blockBits = 8
	defer func() { blockBits = 16 }()
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	l := open(t, t.TempDir(), c)
	defer l.Close()
	appendMany(t, l, 3000)
	c.add(2 * time.Hour) // everything is past retention once acked
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			if _, err := l.ReclaimExpired(context.Background()); err != nil {
				t.Error(err)
				return
			}
			if _, err := l.Prune(); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for seq := uint64(7); seq <= 3000; seq += 7 {
		if err := l.Ack(min(seq, 3000), false); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Ack(3000, false); err != nil {
		t.Fatal(err)
	}
	close(done)
	wg.Wait()
	if st := l.Stats(); st.Pending != 0 || st.AckedSeq != 3000 {
		t.Fatalf("after acking everything while reclaiming: %+v, want 0 pending", st)
	}
}
