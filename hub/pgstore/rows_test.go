package pgstore

import (
	"runtime"
	"strings"
	"testing"
	"unsafe"

	"linli/hub/store"
	"linli/shared/event"
)

// A group's event rows are copied once as it grows, into the one slice
// the commit sorts: at most two and a half times the rows' own size
// allocated for 20,000 events (grown by append a quarter at a time,
// five).
func TestEventRowsCopiedOnce(t *testing.T) {
	const n = 20_000
	evs := make([]event.Event, n)
	for i := range evs {
		evs[i] = event.Event{Device: "gw-1", Seq: uint64(i + 1)}
	}
	body := []byte{1}
	b := (&Store{}).newBatch()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range evs {
		b.PutEvent("s1", &evs[i], body)
	}
	if all := b.events.all(); len(all) != n || all[n-1].seq != n {
		t.Fatalf("%d rows, the last seq %d; want %d", len(all), all[len(all)-1].seq, n)
	}
	runtime.ReadMemStats(&after)
	rows := uint64(n) * uint64(unsafe.Sizeof(row{}))
	if got := after.TotalAlloc - before.TotalAlloc; got > 5*rows/2 {
		t.Fatalf("%d events allocated %d bytes, %.1f times their rows", n, got, float64(got)/float64(rows))
	}
}

// The facts' bounds a read by version names are the range of the hub's
// fact keys, the partial index's predicate (migration 13).
func TestFactsBoundsAreTheFactKeys(t *testing.T) {
	if got := string(store.PrefixEnd([]byte(store.PrefixFact))); got != factsEnd {
		t.Fatalf("the fact keys end at %q, factsEnd is %q", got, factsEnd)
	}
	sql, err := migrations.ReadFile("migrations/0013_fact_version_index.sql")
	if err != nil {
		t.Fatal(err)
	}
	want := "WHERE key >= '" + store.PrefixFact + "'::bytea AND key < '" + factsEnd + "'::bytea"
	if !strings.Contains(string(sql), want) {
		t.Fatalf("migration 13's index is not on the fact keys (%s)", want)
	}
}
