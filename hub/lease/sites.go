package lease

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// EnrolledSites is a Sites func for Options: the sites of every device
// enrolled in the database (the registry's table, which all workers
// share) and extra (the site plans'), read at each call. Every worker
// must see the same sites, or a site only one of them knows could be
// assigned to a worker that never takes it; a worker's in-memory
// registry does not see a device another worker enrolled, the table does.
// When the read fails, the last list read is returned.
func EnrolledSites(pool *pgxpool.Pool, extra []string, log *slog.Logger) func() []string {
	var (
		mu   sync.Mutex
		last []string
	)
	return func() []string {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		rows, err := pool.Query(ctx, `SELECT DISTINCT site FROM enrolled_devices`)
		var sites []string
		if err == nil {
			sites, err = pgx.CollectRows(rows, pgx.RowTo[string])
		}
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			log.Warn("read the enrolled sites; keeping the last list", "err", err)
			return slices.Clone(last)
		}
		sites = append(sites, extra...)
		slices.Sort(sites)
		last = slices.Compact(sites)
		return slices.Clone(last)
	}
}
