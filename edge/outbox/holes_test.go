package outbox

import (
	"context"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"linli/shared/kv"
)

// holesFlag reads keyHoles: -1 when absent.
func holesFlag(t *testing.T, l *Log) int {
	t.Helper()
	v := -1
	err := l.db.View(func(txn *badger.Txn) error {
		if _, err := txn.Get([]byte(keyHoles)); err != nil {
			if err == badger.ErrKeyNotFound {
				return nil
			}
			return err
		}
		n, err := kv.GetU64(txn, []byte(keyHoles))
		v = int(n)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// Open sizes the backlog from the cursors while every seq above the ack
// cursor is stored, and counts the keys only when some may be missing; the
// count after a reopen is exact either way.
func TestReopenPendingWithAndWithoutHoles(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, l *Log, c *clock)
		holes   int // flag before the reopen
		pending uint64
	}{
		{"dense backlog", func(t *testing.T, l *Log, c *clock) {
			appendAll(t, l, checkin(1), checkin(2), checkin(3), checkin(4))
			if err := l.Ack(1, false); err != nil {
				t.Fatal(err)
			}
		}, 0, 3},
		{"dropped telemetry", func(t *testing.T, l *Log, c *clock) {
			appendAll(t, l, reading(1), checkin(2), reading(3), checkin(4))
			if _, _, err := l.DropTelemetry(context.Background(), 10, "test"); err != nil {
				t.Fatal(err)
			}
		}, 1, 3}, // 2, 4 and the gap event
		{"hub lowered the cursor below pruned events", func(t *testing.T, l *Log, c *clock) {
			appendAll(t, l, checkin(1), checkin(2), checkin(3))
			c.add(2 * time.Hour)
			appendAll(t, l, checkin(4), checkin(5))
			if err := l.Ack(3, false); err != nil {
				t.Fatal(err)
			}
			if n, err := l.Prune(); err != nil || n != 3 {
				t.Fatalf("Prune = %d, %v", n, err)
			}
			if err := l.Ack(1, true); err != nil { // a restored hub has only seq 1
				t.Fatal(err)
			}
		}, 1, 2}, // 2 and 3 are gone for good; 4 and 5 wait
		{"caught up after a drop", func(t *testing.T, l *Log, c *clock) {
			appendAll(t, l, reading(1), checkin(2))
			if _, _, err := l.DropTelemetry(context.Background(), 10, "test"); err != nil {
				t.Fatal(err)
			}
			if err := l.Ack(3, false); err != nil {
				t.Fatal(err)
			}
			appendAll(t, l, checkin(4), checkin(5))
		}, 0, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			c := &clock{t: time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)}
			l := open(t, dir, c)
			tt.setup(t, l, c)
			if got := holesFlag(t, l); got != tt.holes {
				t.Errorf("holes flag %d, want %d", got, tt.holes)
			}
			if st := l.Stats(); st.Pending != tt.pending {
				t.Errorf("pending before reopen %d, want %d", st.Pending, tt.pending)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			l = open(t, dir, c)
			defer l.Close()
			if st := l.Stats(); st.Pending != tt.pending {
				t.Fatalf("pending after reopen %d, want %d", st.Pending, tt.pending)
			}
			evs, err := l.Read(l.Stats().AckedSeq, 100, 1<<20)
			if err != nil || uint64(len(evs)) != tt.pending {
				t.Fatalf("read %d events above the cursor (%v), want %d", len(evs), err, tt.pending)
			}
		})
	}
}

// A store written before the flag existed is counted once at open and
// gets the flag from then on.
func TestReopenPendingOfAnOlderStore(t *testing.T) {
	for _, drop := range []bool{false, true} {
		dir := t.TempDir()
		l := open(t, dir, nil)
		appendAll(t, l, reading(1), checkin(2), reading(3), checkin(4))
		want, flag := uint64(4), 0
		if drop {
			if _, _, err := l.DropTelemetry(context.Background(), 10, "test"); err != nil {
				t.Fatal(err)
			}
			want, flag = 3, 1
		}
		if err := l.db.Update(func(txn *badger.Txn) error { return txn.Delete([]byte(keyHoles)) }); err != nil {
			t.Fatal(err)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		l = open(t, dir, nil)
		if st := l.Stats(); st.Pending != want {
			t.Errorf("drop=%v: pending %d, want %d", drop, st.Pending, want)
		}
		if got := holesFlag(t, l); got != flag {
			t.Errorf("drop=%v: flag %d after the counting open, want %d", drop, got, flag)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
