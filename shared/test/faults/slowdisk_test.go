package faults

import (
	"context"
	"slices"
	"testing"
	"time"

	"linli/shared/test/faults/faultrun"
	"linli/shared/test/testkit"
)

// TestSlowDiskGroupsConcurrentWriters: on a disk whose fsync takes 10 ms
// (two per commit), 32 writers posting one at a time share each group
// commit instead of splitting into cohorts that alternate in half-sized
// groups, each paying its own fsyncs; and every write is answered 201.
func TestSlowDiskGroupsConcurrentWriters(t *testing.T) {
	t.Parallel()
	d := newDisk(t)
	d.fs.SetFsyncDelay(10 * time.Millisecond)
	e := testkit.StartEdge(t, testkit.EdgeConfig{ID: "kiosk-slow", Broker: "tcp://" + testkit.StablePort(t), Data: d.data()})
	ledger := testkit.NewLedger()
	if w, err := e.Write(context.Background(), ledger, testkit.WriteCheckin, "S", 0); err != nil || w.Code != 201 {
		t.Fatalf("first write: %+v %v", w, err)
	}
	const writers, each = 32, 20
	commits0 := metric(t, e, "linli_edge_store_commits_total")
	load := testkit.StartLoad(e, ledger, testkit.LoadConfig{Workers: writers, Max: writers * each, Prefix: "S"})
	load.Wait()
	if load.OK() != writers*each || load.Failed() != 0 {
		t.Fatalf("%d writes answered 2xx and %d not (codes %v), want all %d 2xx", load.OK(), load.Failed(), load.Codes(), writers*each)
	}
	commits := metric(t, e, "linli_edge_store_commits_total") - commits0
	per := float64(load.OK()) / commits
	// 30 per commit on a quiet machine; a 0.5 ms linger split the writers
	// into alternating cohorts of ~16–18. 20 keeps that apart with room
	// for a machine busy with the rest of the suite (22 seen then).
	if per < writers*5/8 {
		t.Fatalf("%d writes in %.0f group commits (%.1f per commit): the %d writers did not share the commits", load.OK(), commits, per, writers)
	}
	faultrun.Result(t, "slow disk", "%d writers, fsync 10 ms: %.1f writes per group commit", writers, per)
}

// TestSlowDiskOneSyncPerAnswer: on a disk whose fsync takes 50 ms, a lone
// writer's access event is answered after one fsync (the outbox
// journal's), not the two Badger's commit syncs one after the other
// (value log, then WAL), which no answer could beat: 100 ms. Badger still
// gets each event, synced, behind the answer; every write is answered 201.
func TestSlowDiskOneSyncPerAnswer(t *testing.T) {
	t.Parallel()
	const delay = 50 * time.Millisecond
	d := newDisk(t)
	d.fs.SetFsyncDelay(delay)
	e := testkit.StartEdge(t, testkit.EdgeConfig{ID: "gateway-onesync", Role: "gateway", Broker: "tcp://" + testkit.StablePort(t), Data: d.data()})
	ledger := testkit.NewLedger()
	ctx := context.Background()
	// The first write creates the journal's segment.
	if w, err := e.Write(ctx, ledger, testkit.WriteAccess, "O", 0); err != nil || w.Code != 201 {
		t.Fatalf("first write: %+v %v", w, err)
	}
	var took []time.Duration
	for i := range 9 {
		start := time.Now()
		w, err := e.Write(ctx, ledger, testkit.WriteAccess, "O", int64(i+1))
		if err != nil || w.Code != 201 {
			t.Fatalf("write %d: %+v %v", i+1, w, err)
		}
		took = append(took, time.Since(start))
	}
	slices.Sort(took)
	median := took[len(took)/2]
	// One fsync plus the edge's own work; two fsyncs in a row cannot
	// take less than 2 × delay, whatever the machine's load.
	if median >= 2*delay*9/10 {
		t.Fatalf("a lone writer's access event took %v (median of %v) with %v fsyncs: more than one fsync per answer", median, took, delay)
	}
	faultrun.Result(t, "slow disk", "fsync %v: a lone writer's access event answered in %v (median of 9; two syncs in a row take ≥ %v)", delay, median, 2*delay)
}
