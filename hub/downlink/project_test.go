package downlink

import (
	"context"
	"errors"
	"log/slog"
	"reflect"
	"testing"

	"github.com/jackc/pgx/v5"

	"linli/hub/pgstore"
	"linli/shared/hlc"
	"linli/shared/test/testkit"
	"linli/shared/wire"
)

// On PostgreSQL the store's Projector gets exactly the site and changes
// each Append is given, inside the batch's transaction: what it writes
// commits with the log entries, and its failure fails the whole commit
// (no log entry, no projected row).
func TestProjectorRunsInTheBatch(t *testing.T) {
	ctx := context.Background()
	st, err := pgstore.Open(ctx, testkit.StartPostgres(t), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Pool().Exec(ctx, "CREATE TABLE projected (site text, entity text, id text)"); err != nil {
		t.Fatal(err)
	}
	type call struct {
		site    string
		changes []wire.Change
	}
	var calls []call
	fail := false
	st.SetProjector(func(site string, changes []wire.Change) (pgstore.ProjectWrite, error) {
		return func(ctx context.Context, tx pgx.Tx) error {
			calls = append(calls, call{site, changes})
			for _, c := range changes {
				if _, err := tx.Exec(ctx, "INSERT INTO projected VALUES ($1, $2, $3)", site, c.Entity, c.ID); err != nil {
					return err
				}
			}
			if fail {
				return errors.New("projection refused")
			}
			return nil
		}, nil
	})
	pub := &topicPub{msgs: map[string][][]byte{}}
	l, err := Open(st, pub, hlc.NewClock(nil, 0), nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	s1 := []wire.Change{notice("n1", "一"), notice("n2", "二")}
	s2 := []wire.Change{{Entity: wire.EntityAccessList, ID: "B1", Role: wire.RoleGateway, Body: cb("cards")}}
	b := st.NewBatch()
	if err := l.Append(b, "s1", s1); err != nil {
		t.Fatal(err)
	}
	if err := l.Append(b, "s2", s2); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	l.Commit()
	if want := []call{{"s1", s1}, {"s2", s2}}; !reflect.DeepEqual(calls, want) {
		t.Fatalf("projector calls %+v, want %+v", calls, want)
	}
	rows := func() int {
		var n int
		if err := st.Pool().QueryRow(ctx, "SELECT count(*) FROM projected").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := rows(); n != 3 {
		t.Fatalf("%d projected rows, want 3", n)
	}

	fail = true
	b = st.NewBatch()
	if err := l.Append(b, "s1", []wire.Change{notice("n3", "三")}); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(); err == nil {
		t.Fatal("a commit whose projection failed succeeded")
	}
	l.Abort()
	if n := rows(); n != 3 {
		t.Fatalf("%d projected rows after a failed commit, want the 3 before", n)
	}
	again, err := Open(st, pub, hlc.NewClock(nil, 0), nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if h := again.Head("s1"); h != 2 {
		t.Fatalf("s1's stored log ends at %d after a failed commit, want 2", h)
	}
}
