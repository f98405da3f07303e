package pgstore_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"

	"linli/hub/pgstore"
	"linli/shared/event"
	"linli/shared/test/testkit"
)

// countStatements counts the statements a connection sends, alone or in
// a pipeline.
type countStatements struct{ n atomic.Int64 }

func (c *countStatements) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.n.Add(1)
	return ctx
}
func (c *countStatements) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (c *countStatements) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return ctx
}
func (c *countStatements) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {
	c.n.Add(1)
}
func (c *countStatements) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

// The changes of many sites go in one set of statements, as many as for
// one site, and each site's rows stay its own: the same report and
// activity ids in twenty sites, attendance diffed per site, a deletion
// in one site leaving the others' rows.
func TestPutSitesEntitiesOneSetOfStatements(t *testing.T) {
	ctx := context.Background()
	url := testkit.StartPostgres(t)
	st := open(t, url)
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	tracer := &countStatements{}
	cfg.Tracer = tracer
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	put := func(sites []pgstore.SiteChanges) int64 {
		t.Helper()
		before := tracer.n.Load()
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error { return pgstore.PutSitesEntities(ctx, tx, sites) })
		if err != nil {
			t.Fatal(err)
		}
		return tracer.n.Load() - before - 2 // BEGIN and COMMIT
	}

	const n = 20
	comms := make([]*community, n)
	var first, second []pgstore.SiteChanges
	for i := range comms {
		c := newCommunity(t, fmt.Sprintf("site-%02d", i))
		comms[i] = c
		start := c.now + 24*3_600_000
		ch := c.apply("hub", &event.ActivitySet{ID: "A7", Title: "太极拳晨练", Type: "activity", Site: c.site, Start: start, Capacity: 1})
		ch = append(ch, c.apply("kiosk-b1", &event.Report{Category: "facilities", Title: "灯", Building: "B1"},
			&event.Checkin{Resident: "R1", Activity: "A7", Action: "in"},
			&event.Checkin{Resident: fmt.Sprintf("R%d", 10+i), Activity: "A7", Action: "in"})...)
		first = append(first, pgstore.SiteChanges{Site: c.site, Changes: ch})
		// Then R1 is erased in every site but the first.
		if i > 0 {
			second = append(second, pgstore.SiteChanges{Site: c.site, Changes: c.erase("R1")})
		}
	}
	one := put(first[:1])
	all := put(first[1:])
	t.Logf("one site %d statements, %d sites %d", one, n-1, all)
	if all > one {
		t.Fatalf("%d sites took %d statements, one site %d: want no more", n-1, all, one)
	}
	put(second)

	for i, c := range comms {
		var reports, activities, residents int
		queryRow(t, st, `SELECT (SELECT count(*) FROM reports WHERE site = $1), (SELECT count(*) FROM activities WHERE site = $1),
			(SELECT count(*) FROM activity_attendance WHERE site = $1)`, []any{c.site}, &reports, &activities, &residents)
		v, err := c.m.ActivityView("A7")
		if err != nil {
			t.Fatal(err)
		}
		on := map[string]bool{}
		for _, l := range [][]string{v.Confirmed, v.Waitlist, v.Attended} {
			for _, r := range l {
				on[r] = true
			}
		}
		if i > 0 && on["R1"] || i == 0 && !on["R1"] {
			t.Fatalf("%s: R1 on the lists %v, want only in the first site", c.site, on["R1"])
		}
		if reports != 1 || activities != 1 || residents != len(on) {
			t.Fatalf("%s: %d reports, %d activities, %d attendance rows; want 1, 1, %d", c.site, reports, activities, residents, len(on))
		}
		var seatsLeft int
		queryRow(t, st, `SELECT seats_left FROM activities WHERE site = $1 AND id = 'A7'`, []any{c.site}, &seatsLeft)
		if seatsLeft != int(v.SeatsLeft) {
			t.Fatalf("%s: seats_left %d, the merge's %d", c.site, seatsLeft, v.SeatsLeft)
		}
	}
}
