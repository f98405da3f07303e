package testkit

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestMain stops the tests' PostgreSQL, then checks that every goroutine a
// test started is gone.
func TestMain(m *testing.M) { PostgresMain(m) }

// Each caller gets a database of its own on the one server, with fsync on
// and the server not running as root.
func TestStartPostgres(t *testing.T) {
	a, b := StartPostgres(t), StartPostgres(t)
	if a == b {
		t.Fatalf("two calls gave the same database %s", a)
	}
	ctx := context.Background()
	c, err := pgx.Connect(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var fsync, user string
	if err := c.QueryRow(ctx, "SHOW fsync").Scan(&fsync); err != nil {
		t.Fatal(err)
	}
	if fsync != "on" {
		t.Fatalf("fsync %s, want on", fsync)
	}
	if _, err := c.Exec(ctx, "CREATE TABLE t (n int)"); err != nil {
		t.Fatal(err)
	}
	c2, err := pgx.Connect(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close(ctx)
	var n int
	if err := c2.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE tablename = 't'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatal("a table of one test's database shows in another's")
	}
	if err := c.QueryRow(ctx, "SELECT current_user").Scan(&user); err != nil {
		t.Fatal(err)
	}
	if user != "linli" {
		t.Fatalf("connected as %s, want linli", user)
	}
}
