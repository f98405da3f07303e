package pgstore_test

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"

	"linli/hub/pgstore"
	"linli/hub/store"
	"linli/shared/event"
	"linli/shared/test/testkit"
	"linli/shared/wire"
)

// A large batch is two transactions side by side: its events, and the
// rest (device records, keyed records, projected rows), which commits
// only after the events did. When the events' transaction fails, nothing
// of the batch is stored; when the rest fails, nothing but (perhaps) the
// events is, and the same batch again stores everything, each event once.
// The same holds when the events went ahead (StoreEvents, as the ingest
// calls it before the merge fills the rest).
func TestSplitCommitStoresNoFactWithoutItsEvents(t *testing.T) {
	for _, ahead := range []bool{false, true} {
		t.Run(map[bool]string{false: "at commit", true: "ahead"}[ahead], func(t *testing.T) {
			testSplitCommit(t, ahead)
		})
	}
}

func testSplitCommit(t *testing.T, ahead bool) {
	st := open(t, testkit.StartPostgres(t))
	ctx := context.Background()
	const n = 2000
	batch := func() store.Batch {
		b := st.NewBatch()
		for s := uint64(1); s <= n; s++ {
			ev := event.Event{Device: "gw-1", Seq: s}
			b.PutEvent("s1", &ev, []byte{byte(s)})
		}
		if ahead {
			b.(store.EventsAhead).StoreEvents()
		}
		b.PutDevice(&store.DeviceRecord{ID: "gw-1", Site: "s1", Acked: n})
		b.Set([]byte("k/fact"), []byte("names gw-1's events"))
		b.Project("s1", []wire.Change{{Entity: wire.EntityNotice, ID: "n1", Deleted: true}})
		return b
	}
	stored := func() (events, devices, facts int) {
		t.Helper()
		err := st.Pool().QueryRow(ctx, `SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM devices),
			(SELECT count(*) FROM hub_kv WHERE key = 'k/fact')`).Scan(&events, &devices, &facts)
		if err != nil {
			t.Fatal(err)
		}
		return
	}

	// The events' transaction fails (a row the server refuses): the rest
	// is rolled back.
	if _, err := st.Pool().Exec(ctx, `CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS
		$$ BEGIN IF NEW.seq = 1500 THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$;
		CREATE TRIGGER refuse BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION refuse()`); err != nil {
		t.Fatal(err)
	}
	if err := batch().Commit(); err == nil {
		t.Fatal("a commit whose events were refused succeeded")
	}
	if e, d, f := stored(); e != 0 || d != 0 || f != 0 {
		t.Fatalf("after the events failed: %d events, %d device records, %d facts stored; want none", e, d, f)
	}
	if _, err := st.Pool().Exec(ctx, "DROP TRIGGER refuse ON events"); err != nil {
		t.Fatal(err)
	}

	// The rest fails (its projection): no device record, no fact; the
	// events are all stored or none.
	st.SetProjector(func(string, []wire.Change) (pgstore.ProjectWrite, error) {
		return func(context.Context, pgx.Tx) error { return errors.New("projection refused") }, nil
	})
	if err := batch().Commit(); err == nil {
		t.Fatal("a commit whose projection failed succeeded")
	}
	if e, d, f := stored(); (e != 0 && e != n) || d != 0 || f != 0 {
		t.Fatalf("after the rest failed: %d events, %d device records, %d facts stored; want 0 or %d events and nothing else", e, d, f, n)
	}

	// The same batch again stores everything, each event once.
	st.SetProjector(nil)
	if err := batch().Commit(); err != nil {
		t.Fatal(err)
	}
	if e, d, f := stored(); e != n || d != 1 || f != 1 {
		t.Fatalf("after the resend: %d events, %d device records, %d facts stored; want %d, 1, 1", e, d, f, n)
	}
}

// Events put after the others went ahead, and a rewrite of one that went
// ahead (an erasure the merge made), are committed with the rest: every
// event stored once, the rewritten one in its new form.
func TestEventsAheadThenMore(t *testing.T) {
	st := open(t, testkit.StartPostgres(t))
	ctx := context.Background()
	b := st.NewBatch()
	for s := uint64(1); s <= 1500; s++ {
		ev := event.Event{Device: "gw-1", Seq: s}
		b.PutEvent("s1", &ev, []byte{1})
	}
	b.(store.EventsAhead).StoreEvents()
	for s := uint64(1501); s <= 1600; s++ {
		ev := event.Event{Device: "gw-1", Seq: s}
		b.PutEvent("s1", &ev, []byte{2})
	}
	erased := event.Event{Device: "gw-1", Seq: 7}
	b.RewriteEvent("s1", &erased, []byte{9})
	b.PutDevice(&store.DeviceRecord{ID: "gw-1", Site: "s1", Acked: 1600})
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	var n, late int
	var body []byte
	err := st.Pool().QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE body = '\x02'),
		(SELECT body FROM events WHERE seq = 7) FROM events`).Scan(&n, &late, &body)
	if err != nil {
		t.Fatal(err)
	}
	if n != 1600 || late != 100 || len(body) != 1 || body[0] != 9 {
		t.Fatalf("%d events stored (%d put after the others went ahead), event 7 %x; want 1600, 100, 09", n, late, body)
	}
}
