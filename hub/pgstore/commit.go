package pgstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrCommitUnknown is returned for a commit PostgreSQL answered with a
// warning instead of plain success: the transaction is committed on the
// server it ran on, but a synchronous standby may not have it. Nothing
// may be acked for it; writing the same rows again settles it.
var ErrCommitUnknown = errors.New("commit outcome unknown: PostgreSQL warned while committing (a synchronous standby may not have it)")

// Retry delays of an idempotent commit: from the first to the cap.
const (
	retryFirst = 50 * time.Millisecond
	retryMax   = 2 * time.Second
)

// commitWatch holds, per connection, the warning PostgreSQL sent while
// that connection's COMMIT ran. A COMMIT waiting for a synchronous standby
// whose wait is cancelled (pg_cancel_backend, a cancel request) answers
// success with only a WARNING to say the standby may not have it; the
// notice is the one sign of it on the wire.
type commitWatch struct {
	armed sync.Map // *pgconn.PgConn → *atomic.Pointer[pgconn.Notice]
}

// onNotice is the pool's pgconn.Config.OnNotice.
func (w *commitWatch) onNotice(c *pgconn.PgConn, n *pgconn.Notice) {
	if v, ok := w.armed.Load(c); ok && strings.EqualFold(n.SeverityUnlocalized, "WARNING") {
		v.(*atomic.Pointer[pgconn.Notice]).Store(n)
	}
}

// commit commits tx on conn and reports a warning sent meanwhile as
// ErrCommitUnknown.
func (w *commitWatch) commit(ctx context.Context, conn *pgxpool.Conn, tx pgx.Tx) error {
	var warned atomic.Pointer[pgconn.Notice]
	pc := conn.Conn().PgConn()
	w.armed.Store(pc, &warned)
	err := tx.Commit(ctx)
	w.armed.Delete(pc)
	if err != nil {
		return err
	}
	if n := warned.Load(); n != nil {
		return fmt.Errorf("%w: %s (%s)", ErrCommitUnknown, n.Message, n.Detail)
	}
	return nil
}

// commitIdempotent runs f in a transaction and commits it, so that a nil
// return means the rows are committed and, with synchronous_commit and a
// synchronous standby, on the standby too. f must be idempotent: running
// it again after a commit that did go through changes nothing, which is
// what makes a retry safe when a commit's outcome is unknown (the
// connection died, or the COMMIT was answered with a warning). It retries
// on a fresh connection, with backoff, while ctx lasts.
func (s *Store) commitIdempotent(ctx context.Context, f func(context.Context, pgx.Tx) error) error {
	return s.commitIdempotentAfter(ctx, f, nil)
}

// commitIdempotentAfter is commitIdempotent whose COMMIT waits for after
// (nil: none): f's statements run, then after is called, and only if it
// returns nil is the transaction committed; its error rolls the
// transaction back and is returned without a retry. after may be called
// once per attempt.
func (s *Store) commitIdempotentAfter(ctx context.Context, f func(context.Context, pgx.Tx) error, after func() error) error {
	delay := retryFirst
	for attempt := 1; ; attempt++ {
		retry, err := s.commitOnce(ctx, f, after)
		if err == nil {
			if attempt > 1 {
				s.log.Info("PostgreSQL commit went through after retrying", "attempts", attempt)
			}
			return nil
		}
		if !retry || ctx.Err() != nil {
			if attempt > 1 {
				return fmt.Errorf("%w (gave up after %d attempts)", err, attempt)
			}
			return err
		}
		s.retries.Add(1)
		s.log.Warn("PostgreSQL commit failed; retrying on a fresh connection", "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (gave up after %d attempts)", err, attempt)
		case <-time.After(delay):
		}
		delay = min(2*delay, retryMax)
	}
}

// CommitRetries is how many times a commit was tried again since Open.
func (s *Store) CommitRetries() uint64 { return s.retries.Load() }

// commitOnce is one attempt; retry says whether another may succeed.
func (s *Store) commitOnce(ctx context.Context, f func(context.Context, pgx.Tx) error, after func() error) (retry bool, err error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		// The server is down, restarting or failing over.
		return true, fmt.Errorf("connect: %w", err)
	}
	defer conn.Release()
	tx, err := conn.Begin(ctx)
	if err != nil {
		return retryable(conn, err), err
	}
	if err := f(ctx, tx); err != nil {
		_ = tx.Rollback(ctx)
		return retryable(conn, err), err
	}
	if after != nil {
		if err := after(); err != nil {
			_ = tx.Rollback(ctx)
			return false, err
		}
	}
	// PostgreSQL disarms statement_timeout before the commit proper, so
	// the wait for the standby ends only at the client's deadline, which
	// cuts the connection (pgx's default), or at a cancel, which the
	// server answers with success and a warning (commitWatch).
	if err := s.watch.commit(ctx, conn, tx); err != nil {
		return errors.Is(err, ErrCommitUnknown) || retryable(conn, err), err
	}
	return false, nil
}

// retryable says whether err is of the kind another attempt on a fresh
// connection may not meet: the connection is gone, the server is shutting
// down or starting, or the transaction lost a serialization or deadlock
// race. A closed connection is released by the pool, not reused.
func retryable(conn *pgxpool.Conn, err error) bool {
	if conn.Conn().IsClosed() {
		return true
	}
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		switch {
		case strings.HasPrefix(pg.Code, "08"), // connection exception
			pg.Code == "57P01", pg.Code == "57P02", pg.Code == "57P03", // shutting down, starting
			pg.Code == "40001", pg.Code == "40P01", // serialization, deadlock
			pg.Code == "25006": // read-only: a server that is no longer the primary
			return true
		}
		return false
	}
	return pgconn.SafeToRetry(err)
}

// clientTimeout is the client's bound on each call: the URL's
// statement_timeout when it sets a positive one, else DefaultTimeout.
func clientTimeout(params map[string]string) time.Duration {
	if d, ok := parseTimeout(params["statement_timeout"]); ok && d > 0 {
		return d
	}
	return DefaultTimeout
}

// parseTimeout reads a PostgreSQL duration setting: a number of
// milliseconds, or a number with a unit (us, ms, s, min, h, d).
func parseTimeout(v string) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	i := strings.IndexFunc(v, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	num, unit := v, "ms"
	if i >= 0 {
		num, unit = v[:i], strings.TrimSpace(v[i:])
	}
	n, err := strconv.ParseFloat(num, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	units := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second,
		"min": time.Minute, "h": time.Hour, "d": 24 * time.Hour}
	u, ok := units[unit]
	if !ok {
		return 0, false
	}
	return time.Duration(n * float64(u)), true
}
