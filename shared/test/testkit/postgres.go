package testkit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"
)

// PostgresUser is the system user the test server runs as when the tests
// run as root (as CI does): PostgreSQL refuses to run as root.
const PostgresUser = "linli-test"

// postgres is the one server a test binary starts (at its first
// StartPostgres) and StopPostgres stops.
var postgres struct {
	once sync.Once
	srv  *pgServer
	err  error
	dbs  atomic.Int64
}

type pgServer struct {
	dir  string // removed at stop
	addr string // 127.0.0.1:port
	cmd  *exec.Cmd
	done chan struct{} // closed when the server process exited
	out  *SyncBuffer
}

// StartPostgres returns the URL of a new, empty database of its own on a
// PostgreSQL server this test binary runs: initdb'd in a temporary
// directory, listening on a free loopback port and a socket in that
// directory, fsync on, as PostgresUser when the tests run as root. The
// first call starts the server; later calls (from any test, also in
// parallel) only create a database, which is dropped when the test ends.
// A package whose tests use it stops the server with StopPostgres in its
// TestMain; should the binary die first, the server gets SIGINT with it.
func StartPostgres(t testing.TB) string {
	t.Helper()
	postgres.once.Do(func() { postgres.srv, postgres.err = startPostgres() })
	if postgres.err != nil {
		t.Fatalf("start PostgreSQL: %v", postgres.err)
	}
	srv := postgres.srv
	name := fmt.Sprintf("t%d_%d", os.Getpid(), postgres.dbs.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, srv.url("postgres"))
	if err != nil {
		t.Fatalf("connect to the test PostgreSQL: %v", err)
	}
	defer admin.Close(context.Background())
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, srv.url("postgres"))
		if err != nil {
			t.Errorf("drop database %s: %v", name, err)
			return
		}
		defer c.Close(context.Background())
		// FORCE: a pool the test forgot to close must not keep it.
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	return srv.url(name)
}

// PostgresMain is the TestMain of a package whose tests start PostgreSQL:
// it runs the tests, stops the server, and fails the run if a goroutine
// a test started outlives it (goleak).
func PostgresMain(m *testing.M) {
	code := m.Run()
	StopPostgres()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// StopPostgres stops the server StartPostgres started, if any, and removes
// its directory. Call it from TestMain after m.Run (PostgresMain does).
func StopPostgres() {
	if postgres.srv == nil {
		return
	}
	postgres.srv.stop()
}

func (s *pgServer) url(db string) string {
	return "postgres://linli@" + s.addr + "/" + db + "?sslmode=disable"
}

func (s *pgServer) stop() {
	// SIGINT is PostgreSQL's fast shutdown: clients are disconnected and
	// the server checkpoints and exits.
	_ = s.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	_ = os.RemoveAll(s.dir)
}

// PostgresBin is the directory of Debian's PostgreSQL server binaries
// (/usr/lib/postgresql/<version>/bin, the newest installed).
func PostgresBin() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int {
		va, _ := strconv.Atoi(filepath.Base(filepath.Dir(a)))
		vb, _ := strconv.Atoi(filepath.Base(filepath.Dir(b)))
		return va - vb
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "postgres")); err == nil {
			return dirs[i], nil
		}
	}
	return "", errors.New("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/postgres): run `make deps` (apt-get install postgresql)")
}

func startPostgres() (*pgServer, error) {
	bin, err := PostgresBin()
	if err != nil {
		return nil, err
	}
	cred, err := postgresCredential()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "linli-pg-")
	if err != nil {
		return nil, err
	}
	srv, err := initAndStart(bin, dir, cred)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return srv, nil
}

func initAndStart(bin, dir string, cred *syscall.Credential) (*pgServer, error) {
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, fmt.Errorf("hand %s to %s: %w", dir, PostgresUser, err)
		}
	}
	data := filepath.Join(dir, "data")
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", "linli",
		"--auth=trust", "--encoding=UTF8", "--locale=C", "--no-instructions")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	initdb.Dir = dir
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %w\n%s", err, out)
	}
	// The port is picked free a moment before the server binds it; another
	// process may take it in between, so a bind failure picks another.
	var lastErr error
	for range 3 {
		srv, err := runPostgres(bin, dir, data, cred)
		if err == nil {
			return srv, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

// extra are more settings (-c name=value) for this server alone.
func runPostgres(bin, dir, data string, cred *syscall.Credential, extra ...string) (*pgServer, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	_ = l.Close()
	_, port, _ := net.SplitHostPort(addr)
	out := &SyncBuffer{}
	args := []string{"-D", data,
		"-h", "127.0.0.1", "-p", port, "-k", dir,
		"-c", "fsync=on", "-c", "synchronous_commit=on",
		"-c", "max_connections=200", "-c", "shared_buffers=32MB",
		// /dev/shm is small in containers; mmap keeps parallel query
		// memory in the data directory instead.
		"-c", "dynamic_shared_memory_type=mmap"}
	cmd := exec.Command(filepath.Join(bin, "postgres"), append(args, extra...)...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGINT}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	srv := &pgServer{dir: dir, addr: addr, cmd: cmd, done: make(chan struct{}), out: out}
	go func() { _ = cmd.Wait(); close(srv.done) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-srv.done:
			return nil, fmt.Errorf("postgres exited at start: %s", out.String())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		c, err := pgx.Connect(ctx, srv.url("postgres"))
		cancel()
		if err == nil {
			_ = c.Close(context.Background())
			return srv, nil
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-srv.done
			return nil, fmt.Errorf("postgres not accepting connections on %s after 60s: %v\n%s", addr, err, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// postgresCredential is who runs initdb and postgres: nil (this process's
// user) unless that is root, which PostgreSQL refuses; then PostgresUser,
// created as a system user if missing.
func postgresCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup(PostgresUser)
	if err != nil {
		// Test binaries of other packages may add it at the same time:
		// whether useradd failed matters only if the user is still missing.
		out, aerr := exec.Command("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PostgresUser).CombinedOutput()
		if u, err = user.Lookup(PostgresUser); err != nil {
			return nil, fmt.Errorf("create user %s for the test PostgreSQL: %v %w\n%s", PostgresUser, aerr, err, out)
		}
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("uid of %s: %w", PostgresUser, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("gid of %s: %w", PostgresUser, err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// PGScan runs query with args on a connection of its own to url (within
// 10 s) and scans its one row into dest; any error fails the test. For
// tests that look into a server the code under test writes to.
func PGScan(t testing.TB, url, query string, args []any, dest ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect to %s: %v", url, err)
	}
	defer c.Close(context.Background())
	if err := c.QueryRow(ctx, query, args...).Scan(dest...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}
