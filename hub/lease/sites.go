package lease

import (
	"context"
	"fmt"
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

// Announce lists a worker about to join among the district's workers
// before it is live: with a heartbeat already a TTL old, so no site is
// assigned to it yet, and kept for the hour silent workers are. Every
// worker writes the logins of the listed workers into the broker's
// shared files, so one that rewrites them while this one is still
// logging in keeps its login. A worker already listed is left as it is.
func Announce(ctx context.Context, pool *pgxpool.Pool, id string, ttl time.Duration) error {
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	if _, err := pool.Exec(ctx, `INSERT INTO hub_workers (id, heartbeat) VALUES ($1, now() - $2 * interval '1 millisecond')
		ON CONFLICT (id) DO NOTHING`, id, ms(ttl)); err != nil {
		return fmt.Errorf("announce worker %s: %w", id, err)
	}
	return nil
}
