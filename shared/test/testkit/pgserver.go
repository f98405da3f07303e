package testkit

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgresServer is a PostgreSQL server of its own for a caller outside a
// test, such as the benchmark harness: started as StartPostgres starts
// the tests' server (initdb in a temporary directory, a free loopback
// port, fsync on, PostgresUser under root), optionally with a synchronous
// standby, and stopped with Stop.
type PostgresServer struct {
	srv     *pgServer
	standby *pgServer
	bin     string
	cred    *syscall.Credential
}

// StartPostgresServer initdb's and starts a server; Stop stops it and
// removes its directory.
func StartPostgresServer() (*PostgresServer, error) {
	bin, err := PostgresBin()
	if err != nil {
		return nil, err
	}
	cred, err := postgresCredential()
	if err != nil {
		return nil, err
	}
	srv, err := startPostgres()
	if err != nil {
		return nil, err
	}
	return &PostgresServer{srv: srv, bin: bin, cred: cred}, nil
}

// URL is the URL of database db on the server.
func (s *PostgresServer) URL(db string) string { return s.srv.url(db) }

// PID is the postmaster's process id; the server's other processes are
// its children.
func (s *PostgresServer) PID() int { return s.srv.cmd.Process.Pid }

// StandbyPID is the standby's postmaster's process id, 0 without one.
func (s *PostgresServer) StandbyPID() int {
	if s.standby == nil {
		return 0
	}
	return s.standby.cmd.Process.Pid
}

// CreateDatabase creates database name and returns its URL.
func (s *PostgresServer) CreateDatabase(ctx context.Context, name string) (string, error) {
	if err := s.admin(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", err
	}
	return s.srv.url(name), nil
}

// DropDatabase drops database name, disconnecting whoever still uses it.
func (s *PostgresServer) DropDatabase(ctx context.Context, name string) error {
	return s.admin(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
}

func (s *PostgresServer) admin(ctx context.Context, sql string) error {
	c, err := pgx.Connect(ctx, s.srv.url("postgres"))
	if err != nil {
		return fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(ctx, sql); err != nil {
		return fmt.Errorf("%s: %w", sql, err)
	}
	return nil
}

// StartSyncStandby clones the server with pg_basebackup -R, starts the
// clone on another free loopback port (cluster_name "standby") and makes
// it the server's synchronous standby: from then on every commit returns
// only once the standby has it. It waits until the standby streams as
// the synchronous one.
func (s *PostgresServer) StartSyncStandby(ctx context.Context) error {
	dir := filepath.Join(s.srv.dir, "standby")
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	if s.cred != nil {
		if err := os.Chown(dir, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
			return fmt.Errorf("hand %s to %s: %w", dir, PostgresUser, err)
		}
	}
	data := filepath.Join(dir, "data")
	host, port, _ := net.SplitHostPort(s.srv.addr)
	// initdb's pg_hba.conf lets replication connections in from loopback
	// with the --auth method (trust), for the superuser too.
	bb := exec.CommandContext(ctx, filepath.Join(s.bin, "pg_basebackup"), "-h", host, "-p", port, "-U", "linli",
		"-D", data, "-R", "-X", "stream", "--checkpoint=fast", "--no-sync")
	bb.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	bb.Dir = dir
	if out, err := bb.CombinedOutput(); err != nil {
		return fmt.Errorf("pg_basebackup: %w\n%s", err, out)
	}
	sb, err := runPostgres(s.bin, dir, data, s.cred, "-c", "cluster_name=standby")
	if err != nil {
		return fmt.Errorf("standby: %w", err)
	}
	s.standby = sb
	// Set only now: until the standby exists every commit would wait.
	for _, q := range []string{"ALTER SYSTEM SET synchronous_standby_names = 'standby'", "SELECT pg_reload_conf()"} {
		if err := s.admin(ctx, q); err != nil {
			return err
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		var state string
		c, err := pgx.Connect(ctx, s.srv.url("postgres"))
		if err == nil {
			err = c.QueryRow(ctx, "SELECT coalesce(max(sync_state), '') FROM pg_stat_replication WHERE application_name = 'standby' AND state = 'streaming'").Scan(&state)
			_ = c.Close(context.Background())
		}
		if err == nil && state == "sync" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the standby is not synchronous after 60s (state %q, %v)\n%s", state, err, sb.out.String())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Stop stops the standby, if any, then the server, and removes their
// directories.
func (s *PostgresServer) Stop() {
	if s.standby != nil {
		s.standby.stop()
	}
	s.srv.stop()
}
