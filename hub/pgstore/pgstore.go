// Package pgstore keeps the hub's edge events and device records in
// PostgreSQL: every event exactly once under (site, device, seq), written
// a group commit at a time in one transaction. Its schema comes from the
// numbered SQL files in migrations/, applied in order at Open.
package pgstore

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed migrations/*.sql
var migrations embed.FS

// DefaultTimeout bounds each statement on the server (statement_timeout)
// and each call on the client, unless the URL sets statement_timeout: then
// that bounds both. PostgreSQL does not apply statement_timeout to a
// COMMIT's wait for a synchronous standby: the client's bound ends it.
const DefaultTimeout = 30 * time.Second

// migrationLock is the advisory lock key hubs starting at once take to
// apply migrations one at a time.
const migrationLock = 0x6c696e6c69 // "linli"

// CheckURL reports whether u is a PostgreSQL URL the store can use. Its
// errors show the URL with any password masked.
func CheckURL(u string) error {
	p, err := url.Parse(u)
	if err != nil {
		return errors.New("not a URL: want postgres://USER@HOST:PORT/DB")
	}
	shown := p.Redacted()
	if p.Scheme != "postgres" && p.Scheme != "postgresql" {
		return fmt.Errorf("%q: want postgres://USER@HOST:PORT/DB", shown)
	}
	if p.Host == "" || strings.Trim(p.Path, "/") == "" {
		return fmt.Errorf("%q: want postgres://USER@HOST:PORT/DB (host and database are required)", shown)
	}
	if _, err := pgxpool.ParseConfig(u); err != nil {
		// pgx's own error quotes the URL; its cause does not.
		why := "not a valid PostgreSQL URL"
		if inner := errors.Unwrap(err); inner != nil {
			why = inner.Error()
		}
		return fmt.Errorf("%q: %s", shown, why)
	}
	return nil
}

// Redacted is u with its password masked, for logs and errors.
func Redacted(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(not a URL)"
	}
	return p.Redacted()
}

// Store is the hub's PostgreSQL store.
type Store struct {
	pool      *pgxpool.Pool
	log       *slog.Logger
	timeout   time.Duration // each call's bound on the client
	projector projectorSlot
	watch     commitWatch
	retries   atomic.Uint64
	fencing   fenceSlot
}

// Open connects to the database at u, applies the migrations it lacks and
// returns the store.
func Open(ctx context.Context, u string, log *slog.Logger) (*Store, error) {
	if err := CheckURL(u); err != nil {
		return nil, err
	}
	cfg, err := pgxpool.ParseConfig(u)
	if err != nil {
		return nil, fmt.Errorf("open PostgreSQL store: %w", err)
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["statement_timeout"]; !ok {
		cfg.ConnConfig.RuntimeParams["statement_timeout"] = strconv.FormatInt(DefaultTimeout.Milliseconds(), 10)
	}
	// PostgreSQL keeps a statement's generic plan per connection once
	// made, and the pool's connections live long: a plan made while the
	// tables were small (a new database) reads whole tables when they are
	// large. The foreign key checks of the projected tables are such
	// statements, run per row. Every statement is planned for its values
	// and the tables as they are; planning costs little beside the
	// batched statements it plans.
	if _, ok := cfg.ConnConfig.RuntimeParams["plan_cache_mode"]; !ok {
		cfg.ConnConfig.RuntimeParams["plan_cache_mode"] = "force_custom_plan"
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = "linli-hub"
	// pgxpool's default is four connections on a machine of up to four
	// cores. A large group commit holds two (its events beside the rest)
	// while the ingest prepares the next group with a third; lease
	// renewals, the following of other workers and the API need theirs,
	// also while a commit waits for a synchronous standby. A URL's
	// pool_max_conns wins.
	if !hasParam(u, "pool_max_conns") {
		cfg.MaxConns = max(cfg.MaxConns, DefaultMaxConns)
	}
	s := &Store{log: log, timeout: clientTimeout(cfg.ConnConfig.RuntimeParams)}
	cfg.ConnConfig.OnNotice = s.watch.onNotice
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open PostgreSQL store: %w", err)
	}
	s.pool = pool
	if err := s.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// DefaultMaxConns is the most connections a hub's pool opens unless its
// URL says pool_max_conns.
const DefaultMaxConns = 10

// hasParam says whether the URL's query (or a key=value connection
// string) sets name.
func hasParam(u, name string) bool {
	if p, err := url.Parse(u); err == nil && p.Scheme != "" {
		return p.Query().Has(name)
	}
	for _, f := range strings.Fields(u) {
		if k, _, ok := strings.Cut(f, "="); ok && k == name {
			return true
		}
	}
	return false
}

// Close closes the pool.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// Pool is the connection pool, for the hub parts that keep their own
// tables.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

type migration struct {
	version int
	name    string
	sql     string
}

// loadMigrations reads migrations/NNNN_name.sql in version order.
func loadMigrations() ([]migration, error) {
	files, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, f := range files {
		base := path.Base(f)
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v < 1 {
			return nil, fmt.Errorf("migration %s: name is not NNNN_name.sql", base)
		}
		body, err := migrations.ReadFile(f)
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: base, sql: string(body)})
	}
	slices.SortFunc(out, func(a, b migration) int { return a.version - b.version })
	for i := 1; i < len(out); i++ {
		if out[i].version == out[i-1].version {
			return nil, fmt.Errorf("migration %s: version %d is also %s", out[i].name, out[i].version, out[i-1].name)
		}
	}
	return out, nil
}

// SchemaVersion is the newest schema this hub knows.
func SchemaVersion() int {
	ms, err := loadMigrations()
	if err != nil || len(ms) == 0 {
		return 0
	}
	return ms[len(ms)-1].version
}

// SchemaVersions are the versions of every migration this hub knows, in
// order. Numbers may be skipped: parts of the hub written side by side
// reserve theirs.
func SchemaVersions() []int {
	ms, err := loadMigrations()
	if err != nil {
		return nil
	}
	out := make([]int, len(ms))
	for i, m := range ms {
		out[i] = m.version
	}
	return out
}

// ErrSchemaTooNew is returned by Open for a database a newer hub migrated.
var ErrSchemaTooNew = errors.New("database schema is newer than this hub")

// migrate applies, in one transaction and in version order, every
// migration the database's schema_version does not list: a version
// numbered below one already applied (a part of the hub that reserved its
// number and arrived later) is applied too. Hubs starting together take
// turns on an advisory lock, so each migration runs once.
func (s *Store) migrate(ctx context.Context) error {
	ms, err := loadMigrations()
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(migrationLock)); err != nil {
			return fmt.Errorf("migrate: lock: %w", err)
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_version (
			version    integer PRIMARY KEY,
			name       text NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		rows, err := tx.Query(ctx, "SELECT version FROM schema_version")
		if err != nil {
			return fmt.Errorf("migrate: read schema version: %w", err)
		}
		have, err := pgx.CollectRows(rows, pgx.RowTo[int])
		if err != nil {
			return fmt.Errorf("migrate: read schema version: %w", err)
		}
		known := 0
		if len(ms) > 0 {
			known = ms[len(ms)-1].version
		}
		if newest := slices.Max(append(have, 0)); newest > known {
			return fmt.Errorf("%w: database at version %d, this hub knows up to %d", ErrSchemaTooNew, newest, known)
		}
		for _, m := range ms {
			if slices.Contains(have, m.version) {
				continue
			}
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return fmt.Errorf("migrate: %s: %w", m.name, err)
			}
			if _, err := tx.Exec(ctx, "INSERT INTO schema_version (version, name) VALUES ($1, $2)", m.version, m.name); err != nil {
				return fmt.Errorf("migrate: record %s: %w", m.name, err)
			}
			s.log.Info("database schema migrated", "version", m.version, "migration", m.name)
		}
		return nil
	})
}
