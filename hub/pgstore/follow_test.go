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
// the others' commits, twice a second — goes by the version index, not
// over every fact, and reads exactly those facts.
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
	rows, err := st.Pool().Query(ctx, `EXPLAIN SELECT key, value, version FROM hub_kv
		WHERE key >= $1 AND key < $2 AND version > $3 ORDER BY key LIMIT $4`, []byte("f/"), []byte("f0"), int64(mark), 1000)
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	plan := strings.Join(lines, "\n")
	if !strings.Contains(plan, "hub_kv_version_idx") {
		t.Errorf("the read since a mark does not use the version index:\n%s", plan)
	}
	var n int
	err = st.View(func(v store.View) error {
		return v.Scan([]byte("f/"), nil, mark, func(_, _ []byte, _ uint64) (bool, error) { n++; return true, nil })
	})
	if err != nil || n != 5 {
		t.Fatalf("scan since the mark: %d facts, %v; want the 5 written after it", n, err)
	}
}
