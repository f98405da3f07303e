package pgstore_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
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

// previousRelease is the newest schema version the previous release
// shipped: events, the device registry, operators.
const previousRelease = 3

// applyPreviousRelease builds the previous release's schema in the
// database at url as that release's hub did: its migration files in
// order, each recorded in schema_version.
func applyPreviousRelease(t *testing.T, url string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE TABLE schema_version (version integer PRIMARY KEY, name text NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		t.Fatal(err)
	}
	for v := 1; v <= previousRelease; v++ {
		files, _ := filepath.Glob(fmt.Sprintf("migrations/%04d_*.sql", v))
		if len(files) != 1 {
			t.Fatalf("migration %d: files %v", v, files)
		}
		sql, err := os.ReadFile(files[0])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(ctx, string(sql)); err != nil {
			t.Fatalf("%s: %v", files[0], err)
		}
		if _, err := conn.Exec(ctx, "INSERT INTO schema_version (version, name) VALUES ($1, $2)", v, filepath.Base(files[0])); err != nil {
			t.Fatal(err)
		}
	}
	// Rows of every kind the previous release wrote.
	if _, err := conn.Exec(ctx, `
		INSERT INTO events (site, device, seq, body) VALUES ('xiangyang', 'kiosk-b1', 1, '\xa0'), ('xiangyang', 'kiosk-b1', 2, '\xa1');
		INSERT INTO quarantine (site, device, seq, body, reason) VALUES ('xiangyang', 'kiosk-b1', 3, '\xff', 'bad');
		INSERT INTO devices (site, id, acked, record) VALUES ('xiangyang', 'kiosk-b1', 2, '\xa0');
		INSERT INTO enrolled_devices (id, site, role, enrolled_at, public_key) VALUES ('kiosk-b1', 'xiangyang', 'kiosk', now(), '\x01');
		INSERT INTO resident_keys (site, key) VALUES ('xiangyang', '\x02');
		INSERT INTO operator_accounts (name, role, created_at, updated_at, hash) VALUES ('wang', 'operator', now(), now(), '\x03');
		INSERT INTO audit_log (at, actor, method, path, status) VALUES (now(), 'wang', 'PATCH', '/api/v1/reports/kiosk-b1.1', 200)`); err != nil {
		t.Fatal(err)
	}
}

// A database of the previous release's schema, with rows in it, is
// migrated to the newest: every row is kept, every newer migration is
// recorded once, and the entity tables take the merged state.
func TestMigrationFromPreviousRelease(t *testing.T) {
	url := testkit.StartPostgres(t)
	applyPreviousRelease(t, url)
	st := open(t, url)
	ctx := context.Background()

	var got []int
	queryRow(t, st, "SELECT array_agg(version ORDER BY version) FROM schema_version", nil, &got)
	if want := pgstore.SchemaVersions(); !slices.Equal(got, want) {
		t.Fatalf("schema_version lists %v, want %v", got, want)
	}
	for table, want := range map[string]int{"events": 2, "quarantine": 1, "devices": 1, "enrolled_devices": 1,
		"resident_keys": 1, "operator_accounts": 1, "audit_log": 1} {
		var n int
		queryRow(t, st, "SELECT count(*) FROM "+table, nil, &n)
		if n != want {
			t.Errorf("%s: %d rows after the migration, want %d", table, n, want)
		}
	}
	var body []byte
	queryRow(t, st, "SELECT body FROM events WHERE seq = 2", nil, &body)
	if string(body) != "\xa1" {
		t.Errorf("event body %x after the migration", body)
	}

	c := newCommunity(t, "xiangyang")
	project(t, st, c.site, c.apply("kiosk-b1", &event.Report{Category: "noise", Title: "夜间噪音", Building: "B2"}))
	var n int
	if err := st.Pool().QueryRow(ctx, "SELECT count(*) FROM reports JOIN report_steps ON report = id").Scan(&n); err != nil || n != 1 {
		t.Fatalf("entity tables after the migration: %d rows, %v", n, err)
	}
}

// seedReports projects n reports of site, one in openEvery open and the
// rest resolved, spread over buildings, categories and a year, through
// PutEntities in calls of 1,000: views made by the hub's encoder, as
// hub/state sends them.
func seedReports(t testing.TB, st *pgstore.Store, site string, n, openEvery int) {
	t.Helper()
	start := time.Date(2025, 12, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	var changes []wire.Change
	flush := func() {
		if len(changes) > 0 {
			project(t, st, site, changes)
			changes = changes[:0]
		}
	}
	for i := range n {
		created := hlc.New(start+int64(i)*3_153_600, 0) // n = 10,000 spans a year
		v := merge.ReportView{ID: event.FormatID("kiosk-"+site, uint64(i+1)), Status: event.ReportResolved,
			Category: event.Categories[i%len(event.Categories)], Title: fmt.Sprintf("问题 %d", i),
			Building: fmt.Sprintf("B%d", i%12+1), Unit: fmt.Sprintf("%d-%d", i%6+1, i%30+101), Votes: uint32(i % 5),
			Number: fmt.Sprintf("B%d-%04d", i%12+1, i), Updated: created + hlc.New(3_600_000, 0),
			Steps: []merge.ReportStep{{Event: merge.HistoryCreated, HLC: created, Status: event.ReportSubmitted}}}
		if i%openEvery == 0 {
			v.Status = event.ReportAccepted
			v.Steps = append(v.Steps, merge.ReportStep{Event: merge.HistoryPatched, HLC: v.Updated, Status: v.Status, Reply: "已派物业"})
		} else {
			v.Steps = append(v.Steps, merge.ReportStep{Event: merge.HistoryPatched, HLC: v.Updated, Status: v.Status, Reply: "已处理"})
		}
		body, err := event.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		changes = append(changes, wire.Change{Entity: wire.EntityReport, ID: v.ID, Body: body})
		if len(changes) == 1000 {
			flush()
		}
	}
	flush()
}

// seedAlarms projects n alarms of site, one in 50 still open: sensors of
// 12 buildings, each raised and cleared.
func seedAlarms(t testing.TB, st *pgstore.Store, site string, n int) {
	t.Helper()
	start := time.Date(2025, 12, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	var changes []wire.Change
	for i := range n {
		at := hlc.New(start+int64(i)*60_000, 0)
		source := fmt.Sprintf("smoke-%d-%d", i%12+1, i)
		v := merge.AlarmView{ID: merge.AlarmID(site, source, "smoke"), Site: site, Building: fmt.Sprintf("B%d", i%12+1),
			Source: source, Kind: "smoke", First: at, Last: at, Severity: "critical"}
		if i%50 == 0 {
			v.Active, v.Open = true, true
		} else {
			v.Cleared, v.Closed = at+hlc.New(60_000, 0), at+hlc.New(120_000, 0)
		}
		body, err := event.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		changes = append(changes, wire.Change{Entity: wire.EntityAlarm, ID: v.ID, Body: body})
	}
	project(t, st, site, changes)
}

// The dashboard's reads use the indexes: on a site of 10,000 reports
// (and a district of smaller sites beside it) no plan reads a whole
// table.
func TestHotQueriesUseIndexes(t *testing.T) {
	st := open(t, testkit.StartPostgres(t))
	ctx := context.Background()
	seedReports(t, st, "big", 10_000, 20)
	for _, site := range []string{"s1", "s2", "s3"} {
		seedReports(t, st, site, 500, 10)
	}
	seedAlarms(t, st, "big", 2_000)
	if _, err := st.Pool().Exec(ctx, "ANALYZE"); err != nil {
		t.Fatal(err)
	}
	for _, q := range pgstore.HotQueries("big") {
		rows, err := st.Pool().Query(ctx, "EXPLAIN "+q.SQL, q.Args...)
		if err != nil {
			t.Fatalf("%s: %v", q.Name, err)
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatalf("%s: %v", q.Name, err)
		}
		plan := strings.Join(lines, "\n")
		if strings.Contains(plan, "Seq Scan on reports") || strings.Contains(plan, "Seq Scan on alarms") {
			t.Errorf("%s reads a whole table:\n%s", q.Name, plan)
		}
		t.Logf("%s:\n%s", q.Name, plan)
	}
	// And they answer: the open reports of the big site are one in 20.
	open, err := st.SiteMap(ctx, "big")
	if err != nil || len(open) != 500 {
		t.Fatalf("site map: %d open reports, %v; want 500", len(open), err)
	}
	page, err := st.ReportList(ctx, "big", nil, 100)
	if err != nil || len(page) != 100 || !page[0].Created.After(*page[99].Created) {
		t.Fatalf("report list: %d rows, %v", len(page), err)
	}
}
