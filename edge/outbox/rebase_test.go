package outbox

import (
	"context"
	"testing"
)

// A replacement's empty log numbers above its base, across a restart; a
// log with events waiting keeps its numbering.
func TestRebase(t *testing.T) {
	ctx := context.Background()
	const base = 1 << 40
	dir := t.TempDir()
	l := open(t, dir, nil)
	if moved, err := l.Rebase(base); err != nil || !moved {
		t.Fatalf("rebase an empty log: %v %v", moved, err)
	}
	ev, err := l.Append(ctx, checkin(1))
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
	l = open(t, dir, nil)
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
