package outbox

import (
	"context"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"linli/shared/event"
	"linli/shared/kv"
)

// putGhost leaves what a commit that failed on an I/O error leaves in
// Badger: the event is in the memtable (readable) under seq, though the
// commit returned an error and the outbox will assign seq again.
func putGhost(t *testing.T, l *Log, seq uint64) {
	t.Helper()
	ev, err := event.NewEvent("", seq, l.Clock().Now(), checkin(999))
	if err != nil {
		t.Fatal(err)
	}
	data, err := ev.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if err := l.db.Update(func(txn *badger.Txn) error {
		if err := txn.Set(kv.Key(prefixEvent, kv.U64(seq)), data); err != nil {
			return err
		}
		return txn.Set([]byte(keyLast), kv.U64(seq))
	}); err != nil {
		t.Fatal(err)
	}
}

// Regression (fault suite, I/O errors): a failed commit's events must not
// be sent, or the hub keeps the ghost and drops the real event that later
// gets the same seq.
func TestGhostOfFailedCommitIsNotRead(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, nil)
	appendAll(t, l, checkin(1), checkin(2))
	putGhost(t, l, 3)
	evs, err := l.Read(0, 10, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 {
		t.Fatalf("Read returned %d events with a ghost at seq 3, want the 2 committed ones", len(evs))
	}
	ev, err := l.Append(context.Background(), checkin(3))
	if err != nil || ev.Seq != 3 {
		t.Fatalf("append after the failed commit: %+v %v", ev, err)
	}
	evs, err = l.Read(2, 10, 1<<20)
	if err != nil || len(evs) != 1 {
		t.Fatalf("Read after = %v %v", evs, err)
	}
	if b, err := evs[0].Decode(); err != nil || b.(*event.Checkin).Resident != "R3" {
		t.Fatalf("seq 3 holds %+v (%v), want the acked R3", b, err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	// After a restart a ghost above the last committed seq (a failed
	// commit that reached the disk while m/last did not move on) is not
	// pending: the edge must still drain to pending 0.
	l = open(t, dir, nil)
	if err := l.db.Update(func(txn *badger.Txn) error {
		ev, err := event.NewEvent("", 9, l.Clock().Now(), checkin(9))
		if err != nil {
			return err
		}
		data, err := ev.Encode()
		if err != nil {
			return err
		}
		return txn.Set(kv.Key(prefixEvent, kv.U64(9)), data)
	}); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = open(t, dir, nil)
	defer l.Close()
	if st := l.Stats(); st.LastSeq != 3 || st.Pending != 3 {
		t.Fatalf("after reopen with a ghost at 9: %+v, want last 3 and 3 pending", st)
	}
	if err := l.Ack(3, false); err != nil {
		t.Fatal(err)
	}
	if st := l.Stats(); st.Pending != 0 {
		t.Fatalf("after acking everything committed: %+v, want 0 pending", st)
	}
}

// Regression (fault suite, I/O errors under concurrent writers): after a
// failed commit the next append first settles the store — the ghost's keys
// dropped, the memtables flushed into a synced table — so no later commit
// depends on a WAL that may have a hole where the failed sync was.
func TestSettleAfterFailedCommit(t *testing.T) {
	l := open(t, t.TempDir(), nil)
	defer l.Close()
	appendAll(t, l, checkin(1), checkin(2))
	putGhost(t, l, 3)
	if n := len(l.db.Tables()); n != 0 {
		t.Fatalf("%d tables before the failed commit, want everything in the memtable", n)
	}
	l.mu.Lock() // as commit records a failed commit
	l.doubt, l.unsettled = true, [][]byte{kv.Key(prefixEvent, kv.U64(3))}
	l.mu.Unlock()
	ev, err := l.Append(context.Background(), checkin(3))
	if err != nil || ev.Seq != 3 {
		t.Fatalf("append after the failed commit: %+v %v", ev, err)
	}
	if len(l.db.Tables()) == 0 {
		t.Fatal("the memtables were not flushed into a table before the next commit")
	}
	evs, err := l.Read(0, 10, 1<<20)
	if err != nil || len(evs) != 3 {
		t.Fatalf("Read = %d events, %v; want 3", len(evs), err)
	}
	if b, err := evs[2].Decode(); err != nil || b.(*event.Checkin).Resident != "R3" {
		t.Fatalf("seq 3 = %+v %v, want the acked R3", b, err)
	}
}

// A failed ack-cursor write also leaves the WAL in doubt: the next commit
// flushes first, though there is no ghost event to drop.
func TestSettleAfterFailedAckWrite(t *testing.T) {
	l := open(t, t.TempDir(), nil)
	defer l.Close()
	appendAll(t, l, checkin(1))
	l.mu.Lock()
	l.doubt = true
	l.mu.Unlock()
	appendAll(t, l, checkin(2))
	if len(l.db.Tables()) == 0 {
		t.Fatal("no flush before the commit that followed a failed write")
	}
	if err := l.db.View(func(txn *badger.Txn) error {
		if _, err := txn.Get([]byte(keySettle)); err == nil {
			t.Error("the settle marker was left in the store")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
