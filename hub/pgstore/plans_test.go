package pgstore_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"linli/shared/test/testkit"
)

// A connection of the hub does not keep a plan it made while a table was
// small. PostgreSQL caches a statement's generic plan per connection
// after five runs; one made while reports held a few rows reads them all
// (a sequential scan is cheapest then) and, the pool's connections living
// on, went on doing so as the table grew: every projected report step
// checks its report (the foreign key) with such a statement, and a
// catch-up of 200,000 events spent 30 µs of server CPU per event there
// (6,800 events/s). Here a lookup of a report by its key, of the foreign
// key check's shape, is run on a hub connection while the table is
// small, then planned again once it holds thousands: it must use the
// primary key.
func TestPlansFollowTableGrowth(t *testing.T) {
	st := open(t, testkit.StartPostgres(t))
	ctx := context.Background()
	conn, err := st.Pool().Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "PREPARE lookup(text, text) AS SELECT 1 FROM ONLY reports x WHERE site = $1 AND id = $2 FOR KEY SHARE OF x"); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		site := fmt.Sprintf("w%d", i)
		seedReports(t, st, site, 1, 1)
		if _, err := conn.Exec(ctx, "EXECUTE lookup('"+site+"', 'x')"); err != nil {
			t.Fatal(err)
		}
	}
	seedReports(t, st, "big", 5000, 20)
	rows, err := conn.Query(ctx, "EXPLAIN EXECUTE lookup('big', 'kiosk-big.7')")
	if err != nil {
		t.Fatal(err)
	}
	var plan []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, line)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if p := strings.Join(plan, "\n"); strings.Contains(p, "Seq Scan") || !strings.Contains(p, "reports_pkey") {
		t.Fatalf("a report looked up by key on a hub connection, planned while the table was small:\n%s", p)
	}
}
