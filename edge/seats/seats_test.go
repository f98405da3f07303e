package seats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"linli/edge/outbox"
	"linli/edge/replica"
	"linli/shared/event"
	"linli/shared/merge"
	"linli/shared/test/edgetest"
	"linli/shared/test/poll"
	"linli/shared/wire"
)

// A check-in to a busy activity costs what a check-in costs, not the size
// of the activity's lists: the replica keeps the view's lists (20,000
// residents here) apart, and a check-in reads the rest of the view and
// looks its resident up in one chunk. A new version is read at once (a
// cancellation refuses the next check-in).
func TestCheckinReadsOneResidentOfABusyActivity(t *testing.T) {
	ob, db, err := edgetest.OpenLog(t, t.TempDir(), outbox.Options{Device: "kiosk-1", RetentionInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	rep, err := replica.Open(db, "s1", "kiosk-1", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	s := New(db, ob, rep, slog.New(slog.DiscardHandler))
	v := merge.ActivityView{ID: "A1", Title: "义诊", Kind: "activity", Site: "s1", Kiosks: []merge.KioskShare{},
		Start: time.Now().Add(48 * time.Hour).UnixMilli(), End: time.Now().Add(50 * time.Hour).UnixMilli(),
		CheckinOpens: time.Now().Add(47 * time.Hour).UnixMilli()}
	for i := range 20_000 {
		v.Confirmed = append(v.Confirmed, fmt.Sprintf("R%06d", i))
	}
	seq := uint64(0)
	apply := func() {
		t.Helper()
		body, err := event.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		seq++
		if err := rep.Apply(wire.Down{Site: "s1", Prev: seq - 1, Last: seq,
			Changes: []wire.Change{{Seq: seq, Entity: wire.EntityActivity, ID: "A1", Body: body}}}); err != nil {
			t.Fatal(err)
		}
	}
	apply()
	ctx := context.Background()
	n := 0
	checkin := func() error {
		n++
		_, a, err := s.Checkin(ctx, &event.Checkin{Resident: fmt.Sprintf("N%06d", n), Activity: "A1", Action: "in"})
		if err == nil && a.Act != event.ActSignup {
			err = fmt.Errorf("answer %+v, want a sign-up", a)
		}
		return err
	}
	if err := checkin(); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(20, func() {
		if err := checkin(); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 1000 {
		t.Fatalf("%.0f allocations per check-in: the 20,000-resident lists are decoded", allocs)
	}
	v.Cancelled = true
	apply()
	if err := checkin(); !errors.Is(err, ErrCancelled) {
		t.Fatalf("check-in after the cancellation: %v, want ErrCancelled", err)
	}
}

// A check-in to an activity without a limit writes what it adds, not every
// resident this kiosk confirmed before: the ledger keeps each resident
// under a key of its own. Answers stay as they were: a resident confirmed
// here is confirmed again, and Unseen still counts them all.
func TestLedgerWritesOneResidentPerCheckin(t *testing.T) {
	ob, db, err := edgetest.OpenLog(t, t.TempDir(), outbox.Options{Device: "kiosk-1", RetentionInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	rep, err := replica.Open(db, "s1", "kiosk-1", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	s := New(db, ob, rep, slog.New(slog.DiscardHandler))
	v := merge.ActivityView{ID: "A1", Title: "义诊", Kind: "activity", Site: "s1", Kiosks: []merge.KioskShare{},
		Start: time.Now().Add(48 * time.Hour).UnixMilli(), End: time.Now().Add(50 * time.Hour).UnixMilli(),
		CheckinOpens: time.Now().Add(47 * time.Hour).UnixMilli()}
	body, _ := event.Marshal(v)
	if err := rep.Apply(wire.Down{Site: "s1", Prev: 0, Last: 1,
		Changes: []wire.Change{{Seq: 1, Entity: wire.EntityActivity, ID: "A1", Body: body}}}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	checkin := func(r string) string {
		t.Helper()
		_, a, err := s.Checkin(ctx, &event.Checkin{Resident: r, Activity: "A1", Action: "in"})
		if err != nil {
			t.Fatal(err)
		}
		return a.Status
	}
	for i := range 2000 {
		if st := checkin(fmt.Sprintf("R%06d", i)); st != event.StatusConfirmed {
			t.Fatalf("resident %d: %s, want confirmed", i, st)
		}
	}
	var ledgerBytes int
	if err := db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(ledgerKey("A1"))
		if err == nil {
			ledgerBytes = int(item.ValueSize())
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if ledgerBytes > 200 {
		t.Fatalf("the ledger value is %d bytes after 2,000 sign-ups: it holds the residents", ledgerBytes)
	}
	if st := checkin("R000007"); st != event.StatusConfirmed {
		t.Fatalf("again: %s", st)
	}
	if n, err := s.Unseen(&v); err != nil || n != 2000 {
		t.Fatalf("unseen %d (%v), want 2000", n, err)
	}
	if err := s.Erase("R000007", "T-erased"); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Unseen(&v); err != nil || n != 2000 {
		t.Fatalf("unseen after an erasure %d (%v), want 2000 (the seat stays taken, under the token)", n, err)
	}
}

// A recall is answered with one release: when the replica applies it, and,
// for a recall applied while nothing answered it (the kiosk stopped), at
// the next start. Changes to other activities give nothing back.
func TestRecallAnsweredOnce(t *testing.T) {
	ob, db, err := edgetest.OpenLog(t, t.TempDir(), outbox.Options{Device: "kiosk-1", RetentionInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	rep, err := replica.Open(db, "s1", "kiosk-1", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now().Add(48 * time.Hour)
	seq := uint64(0)
	apply := func(id string, granted uint32, recalled bool) {
		t.Helper()
		v := merge.ActivityView{ID: id, Title: "义诊", Kind: "activity", Site: "s1", Capacity: 20, SeatsLeft: 20,
			Kiosks: []merge.KioskShare{{Device: "kiosk-1", Granted: granted, Recalled: recalled}},
			Start:  start.UnixMilli(), End: start.Add(2 * time.Hour).UnixMilli()}
		body, err := event.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		seq++
		if err := rep.Apply(wire.Down{Site: "s1", Prev: seq - 1, Last: seq,
			Changes: []wire.Change{{Seq: seq, Entity: wire.EntityActivity, ID: id, Body: body}}}); err != nil {
			t.Fatal(err)
		}
	}
	releases := func() map[string]int {
		t.Helper()
		evs, err := ob.Read(0, 1000, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		n := map[string]int{}
		for _, ev := range evs {
			if ev.Kind == event.KindRelease {
				b, err := ev.Decode()
				if err != nil {
					t.Fatal(err)
				}
				n[b.(*event.Release).Activity]++
			}
		}
		return n
	}
	run := func() (stop func()) {
		s := New(db, ob, rep, slog.New(slog.DiscardHandler))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { s.Run(ctx); close(done) }()
		return func() { cancel(); <-done }
	}

	stop := run()
	apply("A1", 5, false)
	apply("A2", 5, false)
	apply("A1", 5, true) // recalled
	poll.WaitFor(t, "a release for A1", func() bool { return releases()["A1"] == 1 })
	apply("A2", 6, false)
	apply("A1", 5, true) // the same recall again: answered already
	stop()
	if n := releases(); n["A1"] != 1 || n["A2"] != 0 {
		t.Fatalf("releases %v, want one for A1", n)
	}

	// A recall applied while nothing answers it is answered at the next
	// start.
	apply("A2", 6, true)
	stop = run()
	defer stop()
	poll.WaitFor(t, "a release for A2 at start", func() bool { return releases()["A2"] == 1 })
}
