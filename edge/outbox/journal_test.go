package outbox

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"linli/edge/journal"
	"linli/shared/event"
	"linli/shared/hlc"
)

func openJournaled(t *testing.T, dir string) *Log {
	t.Helper()
	l, err := Open(openStore(t, dir).DB(), Options{Device: "kiosk-1", Retention: time.Hour, RetentionInterval: time.Hour,
		Journal: filepath.Join(dir, "journal"), JournalAbove: -1})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return l
}

// badgerSeqs lists the seqs of the events Badger holds.
func badgerSeqs(t *testing.T, db *badger.DB) []uint64 {
	t.Helper()
	var seqs []uint64
	if err := db.View(func(txn *badger.Txn) error {
		it := eventIterator(txn)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			seqs = append(seqs, seqOf(it.Item().Key()))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return seqs
}

// With the journal a write is answered before its event is in Badger;
// every reader still sees what was answered before it asked, and a
// builder decides on a store that holds every event numbered before its
// own.
func TestJournalReadersSeeAnsweredWrites(t *testing.T) {
	dir := t.TempDir()
	l := openJournaled(t, dir)
	defer l.Close()
	ctx := context.Background()
	const writers, each = 8, 40
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				var ev event.Event
				var err error
				if i%10 == 9 {
					ev, err = l.AppendFunc(ctx, event.KindCheckin, func(txn *badger.Txn) (event.Body, error) {
						// Every seq below this one is in Badger now.
						it := eventIterator(txn)
						defer it.Close()
						n, top := uint64(0), uint64(0)
						for it.Rewind(); it.Valid(); it.Next() {
							n, top = n+1, seqOf(it.Item().Key())
						}
						// (Events of this group before it are in txn.)
						l.mu.Lock()
						applied, last := l.applied, l.last
						l.mu.Unlock()
						if n != top || applied != last || top < last {
							return nil, fmt.Errorf("builder saw %d events up to seq %d in Badger, %d applied, %d answered", n, top, applied, last)
						}
						return checkin(w*1000 + i), nil
					})
				} else {
					ev, err = l.Append(ctx, checkin(w*1000+i))
				}
				if err != nil {
					errs <- err
					return
				}
				got, err := l.Read(ev.Seq-1, 1, 1<<20)
				if err != nil || len(got) != 1 || got[0].Seq != ev.Seq || got[0].HLC != ev.HLC {
					errs <- fmt.Errorf("read own seq %d right after its answer: %v %v", ev.Seq, got, err)
					return
				}
				if st := l.Stats(); st.LastSeq < ev.Seq {
					errs <- fmt.Errorf("stats say last seq %d after seq %d was answered", st.LastSeq, ev.Seq)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openJournaled(t, dir)
	defer l.Close()
	if st := l.Stats(); st.LastSeq != writers*each || st.Pending != writers*each {
		t.Fatalf("after reopening: %+v", st)
	}
	if seqs := badgerSeqs(t, l.db); len(seqs) != writers*each || seqs[len(seqs)-1] != writers*each {
		t.Fatalf("Badger holds %d events, want %d", len(seqs), writers*each)
	}
}

// A power cut after the journal's sync and before Badger got the events
// leaves them only in the journal: Open puts them in Badger, with the
// seqs a failed journal write left to be reused taken from the record
// written after it, and numbers on above them.
func TestJournalReplayAtOpen(t *testing.T) {
	dir := t.TempDir()
	l := openJournaled(t, dir)
	ctx := context.Background()
	for i := 1; i <= 2; i++ {
		if _, err := l.Append(ctx, checkin(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// What the journal holds when the power goes: seqs 3..5 whose write
	// failed (answered 503), then 3..4 written again and answered.
	base := hlc.FromTime(time.Now().Add(time.Hour)) // ahead of the clock: the floor must come back
	mk := func(first, last uint64, who string) journal.Record {
		r := journal.Record{First: first, Last: last}
		for s := first; s <= last; s++ {
			raw, err := event.Marshal(&event.Checkin{Resident: fmt.Sprintf("%s%d", who, s), Activity: "A7", Action: "in", Status: event.StatusRecorded})
			if err != nil {
				t.Fatal(err)
			}
			ev := event.Event{Seq: s, HLC: base + hlc.Timestamp(s), Kind: event.KindCheckin, Body: raw}
			data, err := ev.Encode()
			if err != nil {
				t.Fatal(err)
			}
			r.Events = append(r.Events, data)
		}
		return r
	}
	jr, err := journal.Open(journal.Options{Dir: filepath.Join(dir, "journal")}, func(journal.Record) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []journal.Record{mk(3, 5, "failed"), mk(3, 4, "answered")} {
		if err := jr.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := jr.Close(); err != nil {
		t.Fatal(err)
	}
	for round := range 2 { // the second open replays nothing more
		l = openJournaled(t, dir)
		if st := l.Stats(); st.LastSeq != 4 || st.Pending != 4 {
			t.Fatalf("round %d: after replay %+v, want last seq 4, 4 pending", round, st)
		}
		evs, err := l.Read(0, 10, 1<<20)
		if err != nil || len(evs) != 4 {
			t.Fatalf("round %d: read %d events, %v", round, len(evs), err)
		}
		for _, ev := range evs[2:] {
			b, err := ev.Decode()
			if want := fmt.Sprintf("answered%d", ev.Seq); err != nil || b.(*event.Checkin).Resident != want {
				t.Fatalf("round %d: seq %d holds %+v (%v), want %s's", round, ev.Seq, b, err, want)
			}
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	l = openJournaled(t, dir)
	defer l.Close()
	ev, err := l.Append(ctx, checkin(9))
	if err != nil || ev.Seq != 5 || ev.HLC <= base+4 {
		t.Fatalf("append after replay: seq %d hlc %d (floor %d): %v", ev.Seq, ev.HLC, base+4, err)
	}
}

// Replay writes only what Badger never had: an event deleted after it was
// applied (retention, a telemetry drop) stays deleted. The journal lets
// go of segments once the hub has acked them.
func TestJournalReplaySkipsWhatWasApplied(t *testing.T) {
	dir := t.TempDir()
	l := openJournaled(t, dir)
	ctx := context.Background()
	for i := 1; i <= 5; i++ {
		if _, err := l.Append(ctx, checkin(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	db := openStore(t, dir).DB()
	if err := db.Update(func(txn *badger.Txn) error { return txn.Delete(eventKey(2)) }); err != nil {
		t.Fatal(err)
	}
	l, err := Open(db, Options{Device: "kiosk-1", Retention: time.Hour, RetentionInterval: time.Hour, Journal: filepath.Join(dir, "journal"), JournalAbove: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if seqs := badgerSeqs(t, db); fmt.Sprint(seqs) != "[1 3 4 5]" {
		t.Fatalf("after reopening Badger holds %v, want seq 2 still deleted", seqs)
	}
	// Two segments: the one written before the reopen, the one after.
	if _, err := l.Append(ctx, checkin(6)); err != nil {
		t.Fatal(err)
	}
	if n := l.jr.Segments(); n != 2 {
		t.Fatalf("%d journal segments, want 2", n)
	}
	if err := l.Ack(6, false); err != nil {
		t.Fatal(err)
	}
	if n := l.jr.Segments(); n != 1 {
		t.Fatalf("after the hub acked everything: %d journal segments, want 1 (the newest seq stays)", n)
	}
}

// Groups go through the journal while Badger's synced commits are slow on
// average, and back to Badger directly once they are fast again, with a
// band between where the path stays as it is.
func TestJournalOnlyWhereCommitsAreSlow(t *testing.T) {
	ms := func(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }
	l := &Log{opts: Options{JournalAbove: 2 * time.Millisecond}}
	for i, c := range []struct {
		average time.Duration
		want    bool
	}{
		{0, false},       // nothing measured: Badger directly
		{ms(0.3), false}, // a fast disk
		{ms(2.5), true},  // a slow card
		{ms(1.5), true},  // in the band: stays
		{ms(0.9), false}, // fast again
		{ms(1.5), false}, // in the band: stays
		{ms(2.1), true},  //
		{ms(20), true},   //
	} {
		l.commitTime = c.average
		if got := l.journalPays(); got != c.want {
			t.Fatalf("step %d: average %v: journal %v, want %v", i, c.average, got, c.want)
		}
	}
	// The average follows the commits: a quarter of each new one.
	avg := &Log{}
	avg.noteCommit(ms(8))
	if avg.commitTime != ms(2) {
		t.Fatalf("one 8 ms commit from nothing: average %v, want 2ms", avg.commitTime)
	}
	for range 30 {
		avg.noteCommit(ms(10))
	}
	if avg.commitTime < ms(9.9) || avg.commitTime > ms(10) {
		t.Fatalf("after 30 commits of 10 ms: average %v", avg.commitTime)
	}
	always := &Log{opts: Options{JournalAbove: -1}}
	if !always.journalPays() {
		t.Fatal("JournalAbove < 0: not through the journal")
	}
}
