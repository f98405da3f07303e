package testkit

import (
	"reflect"
	"testing"
)

// A seq answered 2xx again for the same event is a retry; for another
// event it hides the first write's loss and is reported.
func TestLedgerNotesReusedSeqs(t *testing.T) {
	l := NewLedger()
	l.Record("k1", 1, "a")
	l.Record("k1", 1, "a")
	l.Record("k2", 1, "z")
	l.Record("k1", 2, "b")
	l.Record("k1", 1, "c")
	if got, want := l.Reused("k1"), []string{"seq 1: a, then c"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Reused(k1) = %q, want %q", got, want)
	}
	if got := l.Reused("k2"); len(got) != 0 {
		t.Errorf("Reused(k2) = %q, want none", got)
	}
	if got := l.Count("k1"); got != 2 {
		t.Errorf("Count(k1) = %d, want 2 seqs", got)
	}
}
