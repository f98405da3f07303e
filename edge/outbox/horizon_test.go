package outbox

import (
	"context"
	"testing"
	"time"
)

// Acked events are deletable only when the hub's backups cover them and
// they are older than retention; a hub with no backups leaves retention
// alone in charge.
func TestRetentionWaitsForTheBackupHorizon(t *testing.T) {
	const horizonUnset = ^uint64(0)
	for _, tc := range []struct {
		name    string
		horizon uint64 // horizonUnset: the hub takes no backups
		old     bool   // past the retention window
		want    []uint64
	}{
		{"no backups, young", horizonUnset, false, []uint64{1, 2, 3, 4, 5, 6}},
		{"no backups, old: retention alone", horizonUnset, true, []uint64{6}},
		{"horizon 0, old: nothing backed up, all kept", 0, true, []uint64{1, 2, 3, 4, 5, 6}},
		{"horizon 3, old: up to the horizon", 3, true, []uint64{4, 5, 6}},
		{"horizon 3, young: retention still holds them", 3, false, []uint64{1, 2, 3, 4, 5, 6}},
		{"horizon past acked, old: up to acked", 9, true, []uint64{6}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, blocks := range []bool{false, true} {
				c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
				l := open(t, t.TempDir(), c) // retention: one hour
				appendAll(t, l, checkin(1), checkin(2), checkin(3), checkin(4), checkin(5), checkin(6))
				if err := l.Ack(5, false); err != nil {
					t.Fatal(err)
				}
				if tc.horizon != horizonUnset {
					if err := l.SetHorizon(tc.horizon, true); err != nil {
						t.Fatal(err)
					}
				}
				if tc.old {
					c.add(2 * time.Hour)
				}
				if blocks {
					// As the maintenance loop: whole blocks first (every seq
					// its own block here), then the rest.
					blockBits = 0
					_, err := l.ReclaimExpired(context.Background())
					blockBits = 16
					if err != nil {
						t.Fatal(err)
					}
				}
				if _, err := l.Prune(); err != nil {
					t.Fatal(err)
				}
				if got := storedSeqs(t, l); !equalSeqs(got, tc.want) {
					t.Errorf("blocks=%v: stored %v, want %v", blocks, got, tc.want)
				}
				l.Close()
			}
		})
	}
}

func equalSeqs(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// The horizon survives a restart, and a hub that says it takes no backups
// (after one that did) hands the decision back to retention.
func TestHorizonPersistsAndCanBeCleared(t *testing.T) {
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	dir := t.TempDir()
	l := open(t, dir, c)
	appendAll(t, l, checkin(1), checkin(2), checkin(3))
	if err := l.Ack(3, false); err != nil {
		t.Fatal(err)
	}
	if err := l.SetHorizon(1, true); err != nil {
		t.Fatal(err)
	}
	l.Close()
	l = open(t, dir, c)
	defer l.Close()
	if h, ok := l.Horizon(); !ok || h != 1 {
		t.Fatalf("after reopen horizon = %d, %v; want 1, true", h, ok)
	}
	c.add(2 * time.Hour)
	if n, err := l.Prune(); err != nil || n != 1 {
		t.Fatalf("Prune = %d, %v; want 1 (seq 1, the horizon)", n, err)
	}
	if err := l.SetHorizon(0, false); err != nil {
		t.Fatal(err)
	}
	if n, err := l.Prune(); err != nil || n != 2 {
		t.Fatalf("Prune without backups = %d, %v; want 2", n, err)
	}
}

// Under disk pressure acked events go whatever the horizon, and those no
// backup covered are counted.
func TestReclaimAckedCountsEventsNoBackupCovered(t *testing.T) {
	l := open(t, t.TempDir(), nil)
	defer l.Close()
	appendAll(t, l, checkin(1), checkin(2), checkin(3), checkin(4), checkin(5), reading(6))
	if err := l.Ack(5, false); err != nil {
		t.Fatal(err)
	}
	if err := l.SetHorizon(2, true); err != nil {
		t.Fatal(err)
	}
	n, err := l.ReclaimAcked(context.Background())
	if err != nil || n != 5 {
		t.Fatalf("ReclaimAcked = %d, %v; want 5", n, err)
	}
	if got := l.Stats().AckedDroppedBeforeBackup; got != 3 {
		t.Fatalf("AckedDroppedBeforeBackup = %d, want 3 (seqs 3..5)", got)
	}
	if n, _ := l.ReclaimAcked(context.Background()); n != 0 || l.Stats().AckedDroppedBeforeBackup != 3 {
		t.Fatalf("a second round removed %d and counts %d; want 0 and still 3", n, l.Stats().AckedDroppedBeforeBackup)
	}
	// Without backups at the hub nothing is given up before one.
	l2 := open(t, t.TempDir(), nil)
	defer l2.Close()
	appendAll(t, l2, checkin(1), checkin(2))
	if err := l2.Ack(2, false); err != nil {
		t.Fatal(err)
	}
	if n, err := l2.ReclaimAcked(context.Background()); err != nil || n != 2 || l2.Stats().AckedDroppedBeforeBackup != 0 {
		t.Fatalf("no backups: ReclaimAcked = %d, %v, counted %d; want 2, nil, 0", n, err, l2.Stats().AckedDroppedBeforeBackup)
	}
}

func TestFirstHeld(t *testing.T) {
	l := open(t, t.TempDir(), nil)
	defer l.Close()
	if f, err := l.FirstHeld(); err != nil || f != 1 {
		t.Fatalf("empty: FirstHeld = %d, %v; want 1", f, err)
	}
	appendAll(t, l, checkin(1), checkin(2), checkin(3))
	if f, _ := l.FirstHeld(); f != 1 {
		t.Fatalf("FirstHeld = %d, want 1", f)
	}
	if err := l.Ack(2, false); err != nil {
		t.Fatal(err)
	}
	if _, err := l.ReclaimAcked(context.Background()); err != nil {
		t.Fatal(err)
	}
	if f, _ := l.FirstHeld(); f != 3 {
		t.Fatalf("after reclaim FirstHeld = %d, want 3", f)
	}
	if err := l.Ack(3, false); err != nil {
		t.Fatal(err)
	}
	if _, err := l.ReclaimAcked(context.Background()); err != nil {
		t.Fatal(err)
	}
	if f, _ := l.FirstHeld(); f != 4 {
		t.Fatalf("nothing held: FirstHeld = %d, want 4 (the next seq)", f)
	}
}
