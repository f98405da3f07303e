package pgstore_test

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"linli/hub/pgstore"
	"linli/shared/event"
	"linli/shared/test/testkit"
)

// TestMain stops the tests' PostgreSQL, then checks that every goroutine a
// test started (pools, connections) is gone.
func TestMain(m *testing.M) { testkit.PostgresMain(m) }

func open(t testing.TB, url string) *pgstore.Store {
	t.Helper()
	st, err := pgstore.Open(context.Background(), url, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// Hubs opening a new database at once migrate it once; later opens leave
// it as it is; a database a newer hub migrated is refused.
func TestMigrations(t *testing.T) {
	url := testkit.StartPostgres(t)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() { open(t, url) })
	}
	wg.Wait()
	st := open(t, url)
	ctx := context.Background()
	var got []int
	if err := st.Pool().QueryRow(ctx, "SELECT array_agg(version ORDER BY version) FROM schema_version").Scan(&got); err != nil {
		t.Fatal(err)
	}
	if want := pgstore.SchemaVersions(); !slices.Equal(got, want) {
		t.Fatalf("schema_version lists %v, want each of %v once", got, want)
	}
	var timeout string
	if err := st.Pool().QueryRow(ctx, "SHOW statement_timeout").Scan(&timeout); err != nil {
		t.Fatal(err)
	}
	if timeout != "30s" {
		t.Fatalf("statement_timeout %q, want 30s", timeout)
	}

	if _, err := st.Pool().Exec(ctx, "INSERT INTO schema_version (version, name) VALUES ($1, 'from a newer hub')", pgstore.SchemaVersion()+1); err != nil {
		t.Fatal(err)
	}
	_, err := pgstore.Open(ctx, url, slog.New(slog.DiscardHandler))
	if !errors.Is(err, pgstore.ErrSchemaTooNew) {
		t.Fatalf("open of a newer schema: %v, want ErrSchemaTooNew", err)
	}
}

// A migration the database lacks is applied even when a higher one is
// there already: parts of the hub reserve their numbers and may arrive in
// any order.
func TestMigrationBelowTheNewestApplied(t *testing.T) {
	url := testkit.StartPostgres(t)
	st := open(t, url)
	ctx := context.Background()
	if _, err := st.Pool().Exec(ctx, `DROP TABLE operator_accounts, operator_sessions, operator_tokens, audit_log, login_failures;
		DELETE FROM schema_version WHERE version = 3`); err != nil {
		t.Fatal(err)
	}
	st = open(t, url)
	var got []int
	if err := st.Pool().QueryRow(ctx, "SELECT array_agg(version ORDER BY version) FROM schema_version").Scan(&got); err != nil {
		t.Fatal(err)
	}
	if want := pgstore.SchemaVersions(); !slices.Equal(got, want) {
		t.Fatalf("schema_version lists %v, want %v", got, want)
	}
	var n int
	if err := st.Pool().QueryRow(ctx, "SELECT count(*) FROM audit_log").Scan(&n); err != nil {
		t.Fatalf("migration 3 not applied again: %v", err)
	}
}

// A statement_timeout in the URL wins over the default.
func TestStatementTimeoutFromURL(t *testing.T) {
	st := open(t, testkit.StartPostgres(t)+"&statement_timeout=1500")
	var timeout string
	if err := st.Pool().QueryRow(context.Background(), "SHOW statement_timeout").Scan(&timeout); err != nil {
		t.Fatal(err)
	}
	if timeout != "1500ms" {
		t.Fatalf("statement_timeout %q, want 1500ms", timeout)
	}
}

func TestCheckURL(t *testing.T) {
	for _, tc := range []struct {
		url string
		ok  bool
	}{
		{"postgres://linli@127.0.0.1:5432/linli", true},
		{"postgresql://linli:pw@db.example:5432/linli?sslmode=require", true},
		{"mysql://linli@127.0.0.1/linli", false},
		{"postgres://127.0.0.1:5432", false},
		{"postgres:///linli", false},
		{"/var/lib/linli", false},
		{"postgres://linli@127.0.0.1:5432/linli?sslmode=bogus", false},
		{"postgres://linli:secret@127.0.0.1:5432/linli?sslmode=bogus", false},
		{"mysql://linli:secret@127.0.0.1/linli", false},
	} {
		err := pgstore.CheckURL(tc.url)
		if (err == nil) != tc.ok {
			t.Errorf("CheckURL(%q) = %v, want ok %v", tc.url, err, tc.ok)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("CheckURL(%q) = %v: shows the password", tc.url, err)
		}
	}
}

// A seq beyond PostgreSQL's bigint fails the commit, naming the event, and
// nothing of the batch is stored (it is not wrapped to a negative seq).
func TestSeqBeyondBigint(t *testing.T) {
	st := open(t, testkit.StartPostgres(t))
	b := st.NewBatch()
	ok, err := event.NewEvent("k1", 1, 1, &event.Report{Category: "facilities", Title: "灯", Building: "B1", Unit: "1-1"})
	if err != nil {
		t.Fatal(err)
	}
	big := ok
	big.Seq = math.MaxInt64 + 1
	b.PutEvent("s1", &ok, []byte{0xa0})
	b.PutEvent("s1", &big, []byte{0xa0})
	if err := b.Commit(); err == nil || !strings.Contains(err.Error(), "k1/9223372036854775808") {
		t.Fatalf("commit: %v, want an error naming the event", err)
	}
	var n int
	if err := st.Pool().QueryRow(context.Background(), "SELECT count(*) FROM events").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("%d events stored from a failed commit", n)
	}
}

// A commit of many events (COPYed) stores them all; one whose events are
// partly stored already keeps the stored copies, stores the rest, and
// commits its other writes with them; a small one the same.
func TestEventGroupsKeepTheFirstCopy(t *testing.T) {
	st := open(t, testkit.StartPostgres(t))
	ctx := context.Background()
	put := func(from, to uint64, body byte, key string) {
		t.Helper()
		b := st.NewBatch()
		for s := from; s <= to; s++ {
			ev := event.Event{Device: "gw-1", Seq: s}
			b.PutEvent("s1", &ev, []byte{body})
		}
		b.Set([]byte(key), []byte{body})
		if err := b.Commit(); err != nil {
			t.Fatalf("commit %d–%d: %v", from, to, err)
		}
	}
	put(1, 300, 'a', "k/a")     // all new, many
	put(201, 700, 'b', "k/b")   // 100 stored already, 400 new
	put(691, 710, 'c', "k/c")   // 10 stored, 10 new, few
	put(1001, 1500, 'd', "k/d") // all new again after a fallback
	rows, err := st.Pool().Query(ctx, "SELECT get_byte(body, 0)::bigint, count(*), min(seq), max(seq) FROM events GROUP BY 1 ORDER BY 1")
	if err != nil {
		t.Fatal(err)
	}
	type group struct{ body, n, lo, hi int64 }
	got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (group, error) {
		var g group
		err := r.Scan(&g.body, &g.n, &g.lo, &g.hi)
		return g, err
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []group{{'a', 300, 1, 300}, {'b', 400, 301, 700}, {'c', 10, 701, 710}, {'d', 500, 1001, 1500}}
	if !slices.Equal(got, want) {
		t.Fatalf("stored (body, count, min seq, max seq): %v, want %v", got, want)
	}
	var keys int
	if err := st.Pool().QueryRow(ctx, "SELECT count(*) FROM hub_kv WHERE key IN ('k/a', 'k/b', 'k/c', 'k/d')").Scan(&keys); err != nil {
		t.Fatal(err)
	}
	if keys != 4 {
		t.Fatalf("%d of the 4 commits' records stored", keys)
	}
}

// The pool opens up to DefaultMaxConns connections (a large commit holds
// two beside the ingest's reads, the leases and the API), unless the URL
// says pool_max_conns.
func TestPoolSize(t *testing.T) {
	url := testkit.StartPostgres(t)
	for _, tc := range []struct {
		url  string
		want int32
	}{
		{url, pgstore.DefaultMaxConns},
		{url + "&pool_max_conns=3", 3},
		{url + "&connect_timeout=10&pool_max_conns=20", 20},
	} {
		if got := open(t, tc.url).Pool().Config().MaxConns; got != tc.want {
			t.Errorf("%s: pool of %d connections, want %d", tc.url, got, tc.want)
		}
	}
}

// The keyed records of one commit take one version, above every mark
// read before the commit and below every one read after it.
func TestCommitRecordsShareOneVersion(t *testing.T) {
	st := open(t, testkit.StartPostgres(t))
	ctx := context.Background()
	var marks []uint64
	for i, keys := range [][]string{{"k/a", "k/b", "k/c"}, {"k/b", "k/d"}} {
		m, err := st.ReadMark()
		if err != nil {
			t.Fatal(err)
		}
		marks = append(marks, m)
		b := st.NewBatch()
		for _, k := range keys {
			b.Set([]byte(k), []byte{byte(i)})
		}
		if err := b.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	after, err := st.ReadMark()
	if err != nil {
		t.Fatal(err)
	}
	versions := func(keys ...string) []int64 {
		t.Helper()
		rows, err := st.Pool().Query(ctx, "SELECT DISTINCT version FROM hub_kv WHERE key = ANY($1::text[]::bytea[]) ORDER BY 1", keys)
		if err != nil {
			t.Fatal(err)
		}
		vs, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			t.Fatal(err)
		}
		return vs
	}
	first, second := versions("k/a", "k/c"), versions("k/b", "k/d")
	if len(first) != 1 || len(second) != 1 {
		t.Fatalf("versions of one commit's records: %v and %v, want one each", first, second)
	}
	if !(uint64(first[0]) > marks[0] && uint64(first[0]) < marks[1] && uint64(second[0]) > marks[1] && uint64(second[0]) < after) {
		t.Fatalf("versions %d and %d against marks %v and %d", first[0], second[0], marks, after)
	}
}
