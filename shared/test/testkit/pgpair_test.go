package testkit

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"linli/shared/test/poll"
)

// The pair replicates synchronously: a commit on the primary reads back on
// the standby; with the standby stopped a commit does not return (it is
// cut off by its deadline, never answered as done); once the standby is
// back the primary commits again; and after the primary stops and the
// standby is promoted, the two-host URL reaches the new primary, which
// holds every committed row and takes writes.
func TestPostgresPair(t *testing.T) {
	p := StartPostgresPair(t)
	ctx := context.Background()
	connect := func(url string) *pgx.Conn {
		t.Helper()
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		c, err := pgx.Connect(cctx, url)
		if err != nil {
			t.Fatalf("connect %s: %v\n%s", url, err, p.Log())
		}
		t.Cleanup(func() { c.Close(context.Background()) })
		return c
	}
	count := func(c *pgx.Conn) (int, error) {
		var n int
		err := c.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&n)
		return n, err
	}

	prim := connect(p.PrimaryURL())
	if _, err := prim.Exec(ctx, "CREATE TABLE t (n int PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	if _, err := prim.Exec(ctx, "INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	var mode string
	if err := prim.QueryRow(ctx, "SHOW synchronous_commit").Scan(&mode); err != nil || mode != "on" {
		t.Fatalf("synchronous_commit %q (%v), want on", mode, err)
	}
	// Synchronous commit waits for the standby's flush, not its replay:
	// the row shows there a moment later.
	stby := connect(p.StandbyURL())
	poll.Eventually(t, 10*time.Second, func() (bool, string) {
		n, err := count(stby)
		return err == nil && n == 1, fmt.Sprintf("standby has %d rows (%v), want 1", n, err)
	})
	if _, err := stby.Exec(ctx, "INSERT INTO t VALUES (99)"); err == nil {
		t.Fatal("the standby took a write")
	}

	p.StopStandby()
	blocked := connect(p.PrimaryURL())
	bctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	start := time.Now()
	_, err := blocked.Exec(bctx, "INSERT INTO t VALUES (2)")
	cancel()
	if err == nil {
		t.Fatalf("a commit returned success after %v with the synchronous standby stopped", time.Since(start))
	}
	if waited := time.Since(start); waited < 2*time.Second {
		t.Fatalf("the commit failed after %v, before its deadline: %v", waited, err)
	}

	p.StartStandby()
	p.WaitSync(t)
	again := connect(p.PrimaryURL())
	if _, err := again.Exec(ctx, "INSERT INTO t VALUES (3)"); err != nil {
		t.Fatalf("commit with the standby back: %v", err)
	}

	p.StopPrimary()
	p.Promote()
	rw := connect(p.URL())
	var readOnly string
	if err := rw.QueryRow(ctx, "SHOW transaction_read_only").Scan(&readOnly); err != nil || readOnly != "off" {
		t.Fatalf("the two-host URL reached a server with transaction_read_only %q (%v)", readOnly, err)
	}
	if rw.PgConn().Conn().RemoteAddr().String() != p.standby.addr {
		t.Fatalf("the two-host URL reached %s, want the promoted standby %s", rw.PgConn().Conn().RemoteAddr(), p.standby.addr)
	}
	if _, err := rw.Exec(ctx, "INSERT INTO t VALUES (4)"); err != nil {
		t.Fatalf("write on the promoted standby: %v", err)
	}
	var got []int
	rows, err := rw.Query(ctx, "SELECT n FROM t ORDER BY n")
	if err != nil {
		t.Fatal(err)
	}
	got, err = pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		t.Fatal(err)
	}
	// Row 2 committed on the primary alone (its wait was cut off, not its
	// commit); it may or may not have reached the standby before it
	// stopped. Rows 1 and 3 were acknowledged: they must be there.
	has := map[int]bool{}
	for _, n := range got {
		has[n] = true
	}
	if !has[1] || !has[3] || !has[4] {
		t.Fatalf("the new primary holds rows %v, want 1, 3 and 4", got)
	}
}
