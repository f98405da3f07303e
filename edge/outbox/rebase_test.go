package outbox

import (
	"context"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"linli/shared/event"
)

// A replacement's empty log numbers above its base, across a restart; a
// log with events waiting keeps its numbering. The outbox runs with its
// write-ahead journal, as an edge's does.
func TestRebase(t *testing.T) {
	ctx := context.Background()
	const base = 1 << 40
	dir := t.TempDir()
	l := openJournaled(t, dir)
	if moved, err := l.Rebase(base); err != nil || !moved {
		t.Fatalf("rebase an empty log: %v %v", moved, err)
	}
	// The first write is one built on stored state (a kiosk's check-in):
	// such a write waits until the journal's applier has put every
	// answered group in Badger, and after the jump there is nothing to
	// wait for (it once waited, for good, for seqs below the base that no
	// group would ever bring).
	bounded, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ev, err := l.AppendFunc(bounded, event.KindCheckin, func(*badger.Txn) (event.Body, error) { return checkin(1), nil })
	if err != nil {
		t.Fatal(err)
	}
	if ev.Seq != base+1 {
		t.Fatalf("first seq %d, want %d", ev.Seq, uint64(base+1))
	}
	if last, acked, pending := l.Cursors(); last != base+1 || acked != base || pending != 1 {
		t.Fatalf("cursors %d %d %d", last, acked, pending)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openJournaled(t, dir)
	defer l.Close()
	if ev, err = l.Append(ctx, checkin(2)); err != nil || ev.Seq != base+2 {
		t.Fatalf("after reopen: seq %d %v", ev.Seq, err)
	}
	evs, err := l.Read(base, 10, 1<<20)
	if err != nil || len(evs) != 2 {
		t.Fatalf("read %d events: %v", len(evs), err)
	}
	// Again (the edge restarts): nothing moves.
	if moved, err := l.Rebase(base); err != nil || moved {
		t.Fatalf("rebase a log past its base: %v %v", moved, err)
	}

	other := open(t, t.TempDir(), nil)
	defer other.Close()
	if _, err := other.Append(ctx, checkin(1)); err != nil {
		t.Fatal(err)
	}
	if moved, err := other.Rebase(base); err != nil || moved {
		t.Fatalf("rebase a log with events waiting: %v %v", moved, err)
	}
	if last, _, _ := other.Cursors(); last != 1 {
		t.Fatalf("numbering changed under waiting events: last %d", last)
	}
}
