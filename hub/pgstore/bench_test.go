package pgstore_test

import (
	"context"
	"fmt"
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

// BenchmarkEventAppend commits groups of events through the store's Batch
// (one INSERT … ON CONFLICT DO NOTHING of arrays, in a transaction) and,
// alternately, the same rows with COPY into a table of the same shape,
// with no conflict handling: the ceiling of what PostgreSQL takes. It
// reports both per event and append/copy, the ratio of their times
// (1.0 would be as fast as COPY). Alternating pairs keeps a busy machine's
// load from favouring one side.
//
//	go test -run '^$' -bench EventAppend ./hub/pgstore/
func BenchmarkEventAppend(b *testing.B) {
	st := open(b, testkit.StartPostgres(b))
	ctx := context.Background()
	if _, err := st.Pool().Exec(ctx, "CREATE TABLE events_copy (LIKE events INCLUDING ALL)"); err != nil {
		b.Fatal(err)
	}
	body := make([]byte, 160) // about an encoded report's size
	for _, size := range []int{100, 2000} {
		b.Run(fmt.Sprintf("group=%d", size), func(b *testing.B) {
			// Both tables start empty at each run (-count runs it again),
			// so seqs start over and neither side has more rows.
			if _, err := st.Pool().Exec(ctx, "TRUNCATE events, events_copy"); err != nil {
				b.Fatal(err)
			}
			var appendTime, copyTime time.Duration
			seq := uint64(0)
			device := fmt.Sprintf("k%d", size)
			for b.Loop() {
				first := seq + 1
				seq += uint64(size)

				start := time.Now()
				batch := st.NewBatch()
				for s := first; s <= seq; s++ {
					ev := event.Event{Device: device, Seq: s}
					batch.PutEvent("s1", &ev, body)
				}
				if err := batch.Commit(); err != nil {
					b.Fatal(err)
				}
				appendTime += time.Since(start)

				start = time.Now()
				rows := make([][]any, 0, size)
				for s := first; s <= seq; s++ {
					rows = append(rows, []any{"s1", device, int64(s), body})
				}
				err := pgx.BeginFunc(ctx, st.Pool(), func(tx pgx.Tx) error {
					_, err := tx.CopyFrom(ctx, pgx.Identifier{"events_copy"}, []string{"site", "device", "seq", "body"}, pgx.CopyFromRows(rows))
					return err
				})
				if err != nil {
					b.Fatal(err)
				}
				copyTime += time.Since(start)
			}
			n := float64(b.N * size)
			b.ReportMetric(float64(appendTime.Nanoseconds())/n, "append-ns/event")
			b.ReportMetric(float64(copyTime.Nanoseconds())/n, "copy-ns/event")
			b.ReportMetric(float64(appendTime)/float64(copyTime), "append/copy")
		})
	}
}

// benchReads runs read against a site of 10,000 reports (one in 20 open,
// 2,000 alarms beside them, three smaller sites in the same tables) and
// reports each call's p50 and p99 in nanoseconds, end to end through the
// pool as the API would call it.
func benchReads(b *testing.B, read func(ctx context.Context, st *pgstore.Store) (int, error), wantRows int) {
	st := open(b, testkit.StartPostgres(b))
	ctx := context.Background()
	seedReports(b, st, "big", 10_000, 20)
	for _, site := range []string{"s1", "s2", "s3"} {
		seedReports(b, st, site, 500, 10)
	}
	seedAlarms(b, st, "big", 2_000)
	if _, err := st.Pool().Exec(ctx, "ANALYZE"); err != nil {
		b.Fatal(err)
	}
	var took []time.Duration
	for b.Loop() {
		start := time.Now()
		n, err := read(ctx, st)
		took = append(took, time.Since(start))
		if err != nil || n != wantRows {
			b.Fatalf("%d rows, %v; want %d", n, err, wantRows)
		}
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(took[(len(took)*99)/100].Nanoseconds()), "p99-ns")
}

// BenchmarkReportList reads the newest page (100) of a site's reports.
//
//	go test -run '^$' -bench 'ReportList|SiteMap' ./hub/pgstore/
func BenchmarkReportList(b *testing.B) {
	benchReads(b, func(ctx context.Context, st *pgstore.Store) (int, error) {
		rows, err := st.ReportList(ctx, "big", nil, 100)
		return len(rows), err
	}, 100)
}

// BenchmarkSiteMap reads what the map of a site of 10,000 reports shows:
// its 500 open reports by building.
func BenchmarkSiteMap(b *testing.B) {
	benchReads(b, func(ctx context.Context, st *pgstore.Store) (int, error) {
		rows, err := st.SiteMap(ctx, "big")
		return len(rows), err
	}, 500)
}

// BenchmarkDistrict counts open and overdue reports and alarms for the
// four sites.
func BenchmarkDistrict(b *testing.B) {
	limits := pgstore.Limits{"big": {"fire_safety": 4 * time.Hour, "elevator": 24 * time.Hour}}
	benchReads(b, func(ctx context.Context, st *pgstore.Store) (int, error) {
		rows, err := st.District(ctx, []string{"big", "s1", "s2", "s3"}, limits, time.Now())
		return len(rows), err
	}, 4)
}

// BenchmarkProjectActivity projects the change a check-in makes to an
// activity of 10,000 residents (confirmed and waitlisted): the whole view
// comes each time, and one resident's row is new.
//
//	go test -run '^$' -bench ProjectActivity ./hub/pgstore/
func BenchmarkProjectActivity(b *testing.B) {
	st := open(b, testkit.StartPostgres(b))
	v := merge.ActivityView{ID: "A1", Title: "社区运动会", Kind: "activity", Site: "big", Capacity: 5000,
		Kiosks: []merge.KioskShare{}, Updated: hlc.New(time.Now().UnixMilli(), 0)}
	for i := range 10_000 {
		r := fmt.Sprintf("R%06d", i)
		if i < 5000 {
			v.Confirmed = append(v.Confirmed, r)
		} else {
			v.Waitlist = append(v.Waitlist, r)
		}
	}
	change := func() wire.Change {
		body, err := event.Marshal(v)
		if err != nil {
			b.Fatal(err)
		}
		return wire.Change{Entity: wire.EntityActivity, ID: v.ID, Body: body}
	}
	project(b, st, "big", []wire.Change{change()})
	n := 10_000
	var took []time.Duration
	for b.Loop() {
		v.Waitlist = append(v.Waitlist, fmt.Sprintf("R%06d", n))
		n++
		c := change()
		start := time.Now()
		project(b, st, "big", []wire.Change{c})
		took = append(took, time.Since(start))
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(took[(len(took)*99)/100].Nanoseconds()), "p99-ns")
}

// BenchmarkReportTimeline runs the shipped Grafana dashboard's report
// timeline for a site of 10,000 reports over a year: steps per day and
// kind, from report_steps (a view over the reports' own rows).
//
//	go test -run '^$' -bench ReportTimeline ./hub/pgstore/
func BenchmarkReportTimeline(b *testing.B) {
	benchReads(b, func(ctx context.Context, st *pgstore.Store) (int, error) {
		rows, err := st.Pool().Query(ctx, `SELECT date_trunc('day', s.at) AS time, s.event || coalesce(' ' || nullif(s.status, ''), '') AS metric, count(*)
			FROM report_steps s WHERE s.site IN ('big') AND s.at BETWEEN now() - interval '400 days' AND now() GROUP BY 1, 2`)
		if err != nil {
			return 0, err
		}
		n := 0
		for rows.Next() {
			n++
		}
		return min(n, 1), rows.Err()
	}, 1)
}
