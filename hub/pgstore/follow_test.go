package pgstore_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"linli/hub/store"
	"linli/shared/test/testkit"
)

// A read of the facts written since a recent mark — a worker following
// the others' commits, twice a second — goes by the facts' version index,
// not over every fact, and reads exactly those facts.
func TestScanSinceMarkUsesVersionIndex(t *testing.T) {
	st := open(t, testkit.StartPostgres(t))
	ctx := context.Background()
	if _, err := st.Pool().Exec(ctx, `INSERT INTO hub_kv (key, value, version)
		SELECT convert_to('f/s' || (i % 50) || '/k1/' || lpad(i::text, 8, '0'), 'UTF8'), '\x80'::bytea, nextval('hub_kv_version')
		FROM generate_series(1, 50000) AS i`); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Pool().Exec(ctx, "ANALYZE hub_kv"); err != nil {
		t.Fatal(err)
	}
	mark, err := st.ReadMark()
	if err != nil {
		t.Fatal(err)
	}
	b := st.NewBatch()
	for i := range 5 {
		b.Set(fmt.Appendf(nil, "f/s%d/k2/%08d", i, i), []byte{0x80})
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	// The statement View.Scan sends for a read by version, from the
	// start of the facts and from a page's end inside them.
	for _, from := range []string{store.PrefixFact, store.PrefixFact + "s3/"} {
		rows, err := st.Pool().Query(ctx, `EXPLAIN SELECT key, value, version FROM hub_kv
			WHERE key >= $1 AND key < $2 AND version > $3 AND key >= 'f/'::bytea AND key < 'f0'::bytea ORDER BY key LIMIT $4`,
			[]byte(from), store.PrefixEnd([]byte(store.PrefixFact)), int64(mark), 1000)
		if err != nil {
			t.Fatal(err)
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		if plan := strings.Join(lines, "\n"); !strings.Contains(plan, "hub_kv_fact_version") {
			t.Errorf("the read since a mark from %q does not use the facts' version index:\n%s", from, plan)
		}
	}
	// Records outside the facts are not in that index.
	b = st.NewBatch()
	b.Set([]byte("l/s1/00000001"), []byte{0x80})
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	var indexed int
	queryRow(t, st, `SELECT count(*) FROM hub_kv WHERE version > $1 AND key >= 'f/'::bytea AND key < 'f0'::bytea`, []any{int64(mark)}, &indexed)
	if indexed != 5 {
		t.Errorf("%d fact records above the mark, want 5", indexed)
	}
	var n int
	err = st.View(func(v store.View) error {
		return v.Scan([]byte("f/"), nil, mark, func(_, _ []byte, _ uint64) (bool, error) { n++; return true, nil })
	})
	if err != nil || n != 5 {
		t.Fatalf("scan since the mark: %d facts, %v; want the 5 written after it", n, err)
	}
}
