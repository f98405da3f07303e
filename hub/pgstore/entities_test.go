package pgstore_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"linli/hub/pgstore"
	"linli/shared/event"
	"linli/shared/hlc"
	"linli/shared/merge"
	"linli/shared/test/testkit"
	"linli/shared/wire"
)

// community folds real events through shared/merge and turns the
// entities each batch changed into downlink changes the way the hub does
// (a snapshot of the view, or a deletion when the entity has no view).
type community struct {
	t     testing.TB
	m     *merge.State
	site  string
	seqs  map[string]uint64
	now   int64 // wall milliseconds of the last event
	facts []merge.Fact
}

func newCommunity(t testing.TB, site string) *community {
	return &community{t: t, m: merge.New(), site: site, seqs: map[string]uint64{}, now: 1_780_000_000_000}
}

// apply records bodies as events of device, one second apart, folds them
// and returns the changes of the site.
func (c *community) apply(device string, bodies ...event.Body) []wire.Change {
	c.t.Helper()
	var facts []merge.Fact
	for _, b := range bodies {
		c.seqs[device]++
		c.now += 1000
		ev, err := event.NewEvent(device, c.seqs[device], hlc.New(c.now, 0), b)
		if err != nil {
			c.t.Fatal(err)
		}
		facts = append(facts, merge.Fact{Site: c.site, Event: ev})
	}
	c.facts = append(c.facts, facts...)
	refs, err := c.m.ApplyBatch(facts)
	if err != nil {
		c.t.Fatal(err)
	}
	return c.changes(refs)
}

// erase folds the facts again without the check-ins of resident and
// returns the changes of every activity and report of the site, as the
// hub's erasure of a resident does.
func (c *community) erase(resident string) []wire.Change {
	c.t.Helper()
	kept := slices.DeleteFunc(slices.Clone(c.facts), func(f merge.Fact) bool {
		b, err := f.Event.Decode()
		ci, ok := b.(*event.Checkin)
		return err == nil && ok && ci.Resident == resident
	})
	c.m = merge.New()
	if _, err := c.m.ApplyBatch(kept); err != nil {
		c.t.Fatal(err)
	}
	var refs []merge.Ref
	for _, r := range c.m.Reports(c.site) {
		refs = append(refs, merge.Ref{Kind: merge.RefReport, Site: c.site, ID: r.ID})
	}
	for _, a := range c.m.Activities(c.site) {
		refs = append(refs, merge.Ref{Kind: merge.RefActivity, Site: c.site, ID: a.ID})
	}
	return append(c.changes(refs), wire.Change{Entity: wire.EntityResident, ID: resident, Body: []byte{0x40}})
}

// changes builds the downlink changes of refs as hub/state does.
func (c *community) changes(refs []merge.Ref) []wire.Change {
	c.t.Helper()
	kinds := map[string]string{merge.RefReport: wire.EntityReport, merge.RefActivity: wire.EntityActivity,
		merge.RefNotice: wire.EntityNotice, merge.RefAlarm: wire.EntityAlarm}
	var out []wire.Change
	for _, r := range refs {
		if r.Site != c.site || kinds[r.Kind] == "" {
			continue
		}
		v, ok := c.m.View(r)
		ch := wire.Change{Entity: kinds[r.Kind], ID: r.ID, Deleted: !ok}
		if ok {
			body, err := event.Marshal(v)
			if err != nil {
				c.t.Fatal(err)
			}
			ch.Body = body
		}
		out = append(out, ch)
	}
	return out
}

// project writes changes in one transaction and commits it.
func project(t testing.TB, st *pgstore.Store, site string, changes []wire.Change) {
	t.Helper()
	err := pgx.BeginFunc(context.Background(), st.Pool(), func(tx pgx.Tx) error {
		return pgstore.PutEntities(context.Background(), tx, site, changes)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func queryRow(t testing.TB, st *pgstore.Store, sql string, args []any, dest ...any) {
	t.Helper()
	if err := st.Pool().QueryRow(context.Background(), sql, args...).Scan(dest...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

type stepRow struct {
	Event, Status, Reply string
	At                   time.Time
}

func reportSteps(t testing.TB, st *pgstore.Store, site, id string) []stepRow {
	t.Helper()
	rows, _ := st.Pool().Query(context.Background(),
		"SELECT event, status, reply, at FROM report_steps WHERE site = $1 AND report = $2 ORDER BY n", site, id)
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[stepRow])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// A report is one row updated in place as it moves on; its public
// timeline is in report_steps in order; the whole view is in view.
func TestPutEntitiesReport(t *testing.T) {
	st := open(t, testkit.StartPostgres(t))
	c := newCommunity(t, "xiangyang")
	project(t, st, c.site, c.apply("kiosk-b1", &event.Report{Category: "fire_safety", Title: "楼道堆放杂物",
		Building: "B1", Unit: "1-402", Resident: "R1", Number: "B1-0001"}))
	id := event.FormatID("kiosk-b1", 1)
	filed := time.UnixMilli(c.now).UTC()

	var status, building, number string
	var created time.Time
	var closed *time.Time
	queryRow(t, st, "SELECT status, building, number, created_at, closed_at FROM reports WHERE site = $1 AND id = $2",
		[]any{c.site, id}, &status, &building, &number, &created, &closed)
	if status != event.ReportSubmitted || building != "B1" || number != "B1-0001" || !created.Equal(filed) || closed != nil {
		t.Fatalf("filed report: %s %s %s created %v closed %v", status, building, number, created, closed)
	}

	project(t, st, c.site, c.apply("kiosk-b1", &event.Vote{Report: id, Resident: "R9"}))
	project(t, st, c.site, c.apply("hub", &event.ReportPatch{Report: id, Status: event.ReportAccepted, Note: "已派物业", Who: "op"}))
	project(t, st, c.site, c.apply("hub", &event.ReportPatch{Report: id, Status: event.ReportResolved, Note: "已清理", Who: "op"}))
	resolved := time.UnixMilli(c.now).UTC()

	var votes, rows int
	var viewStatus string
	queryRow(t, st, `SELECT status, votes, closed_at, view->>'status', (SELECT count(*) FROM reports)
		FROM reports WHERE site = $1 AND id = $2`, []any{c.site, id}, &status, &votes, &closed, &viewStatus, &rows)
	if status != event.ReportResolved || viewStatus != status || votes != 1 || closed == nil || !closed.Equal(resolved) || rows != 1 {
		t.Fatalf("resolved report: status %s (view %s), votes %d, closed %v, %d rows", status, viewStatus, votes, closed, rows)
	}
	want := []stepRow{{Event: merge.HistoryCreated, Status: event.ReportSubmitted, At: filed},
		{Event: merge.HistoryPatched, Status: event.ReportAccepted, Reply: "已派物业", At: resolved.Add(-time.Second)},
		{Event: merge.HistoryPatched, Status: event.ReportResolved, Reply: "已清理", At: resolved}}
	if got := reportSteps(t, st, c.site, id); !slices.EqualFunc(got, want, func(a, b stepRow) bool {
		return a.Event == b.Event && a.Status == b.Status && a.Reply == b.Reply && a.At.Equal(b.At)
	}) {
		t.Fatalf("steps %+v, want %+v", got, want)
	}
}

// Attendance rows follow the activity's lists: a promoted resident moves
// from the waitlist to the confirmed list, one who checked in inside the
// window is attended, an erased resident's
// row is gone; the counts are columns.
func TestPutEntitiesActivityAttendance(t *testing.T) {
	st := open(t, testkit.StartPostgres(t))
	c := newCommunity(t, "xiangyang")
	start := c.now + 24*3_600_000
	project(t, st, c.site, c.apply("hub", &event.ActivitySet{ID: "A7", Title: "太极拳晨练", Type: "activity",
		Site: c.site, Start: start, Capacity: 2, Venue: "活动室"}))
	var in []event.Body
	for _, r := range []string{"R1", "R2", "R3", "R4"} {
		in = append(in, &event.Checkin{Resident: r, Activity: "A7", Action: "in"})
	}
	project(t, st, c.site, c.apply("kiosk-b1", in...))
	check := func(wantConfirmed, wantWaitlist, wantAttended []string) {
		t.Helper()
		v, err := c.m.ActivityView("A7")
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(v.Confirmed, wantConfirmed) || !slices.Equal(v.Waitlist, wantWaitlist) || !slices.Equal(v.Attended, wantAttended) {
			t.Fatalf("the merge's lists %v %v %v, want %v %v %v", v.Confirmed, v.Waitlist, v.Attended, wantConfirmed, wantWaitlist, wantAttended)
		}
		type att struct {
			Resident, Status string
			Attended         bool
		}
		rows, _ := st.Pool().Query(context.Background(), `SELECT resident, status, attended
			FROM activity_attendance WHERE site = $1 AND activity = 'A7' ORDER BY status, resident`, c.site)
		got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[att])
		if err != nil {
			t.Fatal(err)
		}
		var want []att
		for _, r := range slices.Sorted(slices.Values(wantConfirmed)) {
			want = append(want, att{r, "confirmed", slices.Contains(wantAttended, r)})
		}
		for _, r := range slices.Sorted(slices.Values(wantWaitlist)) {
			want = append(want, att{r, "waitlisted", slices.Contains(wantAttended, r)})
		}
		if !slices.Equal(got, want) {
			t.Fatalf("attendance %+v, want %+v", got, want)
		}
		var confirmed, waitlisted, attended, capacity int
		var startAt time.Time
		var venue string
		queryRow(t, st, `SELECT confirmed, waitlisted, attended, capacity, start_at, venue FROM activities
			WHERE site = $1 AND id = 'A7'`, []any{c.site}, &confirmed, &waitlisted, &attended, &capacity, &startAt, &venue)
		if confirmed != len(wantConfirmed) || waitlisted != len(wantWaitlist) || attended != len(wantAttended) ||
			capacity != 2 || !startAt.Equal(time.UnixMilli(start)) || venue != "活动室" {
			t.Fatalf("activity row: %d confirmed, %d waitlisted, %d attended, capacity %d, start %v, venue %q",
				confirmed, waitlisted, attended, capacity, startAt, venue)
		}
	}
	check(nil, []string{"R1", "R2", "R3", "R4"}, nil)

	project(t, st, c.site, c.apply("hub", &event.Promote{Activity: "A7", Resident: "R2", From: event.PromoteReserve}))
	check([]string{"R2"}, []string{"R1", "R3", "R4"}, nil)

	c.now = start + 60_000 // inside the window: a check-in is attendance
	project(t, st, c.site, c.apply("kiosk-b1", &event.Checkin{Resident: "R2", Activity: "A7", Action: "in"}))
	check([]string{"R2"}, []string{"R1", "R3", "R4"}, []string{"R2"})

	project(t, st, c.site, c.erase("R3"))
	check([]string{"R2"}, []string{"R1", "R4"}, []string{"R2"})
}

// A deletion removes the row: a withdrawn notice leaves the kiosks and
// the table. Alarms keep their episode's state in columns.
func TestPutEntitiesDeletionAndAlarms(t *testing.T) {
	st := open(t, testkit.StartPostgres(t))
	c := newCommunity(t, "xiangyang")
	notice := &event.NoticeSet{ID: "N1", Site: c.site, Title: "停水通知", Body: "周三停水", Category: "announcement",
		Buildings: []string{"B1", "B2"}}
	project(t, st, c.site, c.apply("hub", notice))
	var buildings []string
	queryRow(t, st, "SELECT buildings FROM notices WHERE site = $1 AND id = 'N1'", []any{c.site}, &buildings)
	if !slices.Equal(buildings, []string{"B1", "B2"}) {
		t.Fatalf("buildings %v", buildings)
	}
	withdrawn := *notice
	withdrawn.Withdrawn = true
	changes := c.apply("hub", &withdrawn)
	if len(changes) != 1 || !changes[0].Deleted {
		t.Fatalf("withdrawal gave %+v, want one deletion", changes)
	}
	project(t, st, c.site, changes)
	var n int
	queryRow(t, st, "SELECT count(*) FROM notices", nil, &n)
	if n != 0 {
		t.Fatalf("%d notices after the withdrawal", n)
	}

	project(t, st, c.site, c.apply("gw-b3", &event.Alarm{Sensor: "smoke-3-1", Type: "smoke", Active: true, Building: "B3", Place: "3号楼 1单元"}))
	project(t, st, c.site, c.apply("hub", &event.AlarmAck{Site: c.site, Source: "smoke-3-1", Type: "smoke", Who: "op"}))
	var active, open, acked bool
	var by, kind, severity string
	queryRow(t, st, "SELECT active, open, acked, acked_by, kind, severity FROM alarms WHERE site = $1 AND id = $2",
		[]any{c.site, merge.AlarmID(c.site, "smoke-3-1", "smoke")}, &active, &open, &acked, &by, &kind, &severity)
	if !active || !open || !acked || by != "op" || kind != "smoke" || severity == "" {
		t.Fatalf("alarm: active %v open %v acked %v by %q kind %q severity %q", active, open, acked, by, kind, severity)
	}
}

// Nothing of a transaction that rolls back is left; changes for one
// device or one role are no part of the community's state and are not
// projected; a delta (a live message, not the log's change) is refused.
func TestPutEntitiesRollbackAndSkips(t *testing.T) {
	st := open(t, testkit.StartPostgres(t))
	c := newCommunity(t, "xiangyang")
	changes := c.apply("kiosk-b1", &event.Report{Category: "noise", Title: "夜间噪音", Building: "B2"})
	ctx := context.Background()
	errAbort := errors.New("the facts' commit failed")
	err := pgx.BeginFunc(ctx, st.Pool(), func(tx pgx.Tx) error {
		if err := pgstore.PutEntities(ctx, tx, c.site, changes); err != nil {
			return err
		}
		return errAbort
	})
	if !errors.Is(err, errAbort) {
		t.Fatal(err)
	}
	var n int
	queryRow(t, st, "SELECT (SELECT count(*) FROM reports) + (SELECT count(*) FROM report_steps)", nil, &n)
	if n != 0 {
		t.Fatalf("%d rows after a rollback", n)
	}

	restricted := []wire.Change{
		{Entity: wire.EntityReport, ID: "kiosk-b1.1", Device: "kiosk-b1", Body: changes[0].Body},
		{Entity: wire.EntityReport, ID: "kiosk-b1.1", Role: wire.RoleGateway, Body: changes[0].Body},
		{Entity: wire.EntityReport, ID: "kiosk-b1.1", Withheld: true},
		{Entity: wire.EntityAccessList, ID: "B3", Role: wire.RoleGateway, Body: []byte{0xa0}},
		{Entity: wire.EntityTrust, ID: wire.TrustSiteCA, Body: []byte{0xa0}},
	}
	project(t, st, c.site, restricted)
	queryRow(t, st, "SELECT count(*) FROM reports", nil, &n)
	if n != 0 {
		t.Fatalf("%d reports from changes for one device or role", n)
	}

	delta := []wire.Change{{Entity: wire.EntityReport, ID: "kiosk-b1.1", Base: 1, Delta: &wire.Delta{}}}
	err = pgx.BeginFunc(ctx, st.Pool(), func(tx pgx.Tx) error { return pgstore.PutEntities(ctx, tx, c.site, delta) })
	if err == nil {
		t.Fatal("a delta was projected")
	}
}

// Within one call the last change of an entity wins, whatever came
// before it (the log keeps only the newest change of each entity).
func TestPutEntitiesLastChangeWins(t *testing.T) {
	st := open(t, testkit.StartPostgres(t))
	c := newCommunity(t, "xiangyang")
	first := c.apply("kiosk-b1", &event.Report{Category: "noise", Title: "夜间噪音", Building: "B2"})
	id := first[0].ID
	second := c.apply("hub", &event.ReportPatch{Report: id, Status: event.ReportAccepted, Who: "op"})
	project(t, st, c.site, append(first, second...))
	var status string
	var steps int
	queryRow(t, st, "SELECT status, (SELECT count(*) FROM report_steps) FROM reports WHERE id = $1", []any{id}, &status, &steps)
	if status != event.ReportAccepted || steps != 2 {
		t.Fatalf("status %s with %d steps, want accepted with 2", status, steps)
	}
}

// Deleting a report or an activity deletes its steps or its attendance
// with it; another entity's rows stay.
func TestPutEntitiesDeletionTakesTheChildren(t *testing.T) {
	st := open(t, testkit.StartPostgres(t))
	c := newCommunity(t, "xiangyang")
	for _, id := range []string{"A7", "A8"} {
		project(t, st, c.site, c.apply("hub", &event.ActivitySet{ID: id, Title: "太极拳晨练", Type: "activity",
			Site: c.site, Start: c.now + 24*3_600_000, Capacity: 2}))
		project(t, st, c.site, c.apply("kiosk-b1", &event.Checkin{Resident: "R1", Activity: id, Action: "in"}))
	}
	var reports []string
	for range 2 {
		for _, ch := range c.apply("kiosk-b1", &event.Report{Category: event.Categories[0], Title: "灯", Building: "B1", Unit: "1-1", Resident: "R1"}) {
			if ch.Entity == wire.EntityReport {
				reports = append(reports, ch.ID)
				project(t, st, c.site, []wire.Change{ch})
			}
		}
	}
	count := func() (steps, attendance int) {
		t.Helper()
		queryRow(t, st, "SELECT (SELECT count(*) FROM report_steps WHERE site = $1), (SELECT count(*) FROM activity_attendance WHERE site = $1)",
			[]any{c.site}, &steps, &attendance)
		return steps, attendance
	}
	if s, a := count(); s != 2 || a != 2 {
		t.Fatalf("%d steps and %d attendance rows before, want 2 and 2", s, a)
	}
	project(t, st, c.site, []wire.Change{{Entity: wire.EntityReport, ID: reports[0], Deleted: true},
		{Entity: wire.EntityActivity, ID: "A7", Deleted: true}})
	if s, a := count(); s != 1 || a != 1 {
		t.Fatalf("%d steps and %d attendance rows after deleting one report and one activity, want 1 and 1", s, a)
	}
	var left string
	queryRow(t, st, "SELECT report FROM report_steps WHERE site = $1", []any{c.site}, &left)
	if left != reports[1] {
		t.Fatalf("the steps of %s stayed, want those of %s", left, reports[1])
	}
}
