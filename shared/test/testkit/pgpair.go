package testkit

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"linli/shared/test/process"
)

// StandbyName is the standby's application_name, the one the primary's
// synchronous_standby_names waits for.
const StandbyName = "standby"

// PostgresPair is a PostgreSQL primary with a synchronous standby, for the
// tests of what the hub does when its database restarts, fails over or
// loses its standby. Both run as StartPostgres's server does (temporary
// directories, loopback ports, fsync on, PostgresUser under root); each
// keeps its port across restarts, so URL names both for good.
type PostgresPair struct {
	t        testing.TB
	bin, dir string
	cred     *syscall.Credential
	primary  *pgNode
	standby  *pgNode
}

// pgNode is one server of the pair.
type pgNode struct {
	name, data, addr string
	args             []string // -c settings of this node alone

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	out  *SyncBuffer
}

// pairDB is the database the pair's URLs name.
const pairDB = "linli"

// StartPostgresPair initdb's a primary (wal_level replica, a replication
// role allowed from loopback, synchronous_standby_names naming the
// standby, synchronous_commit on), clones its standby with pg_basebackup
// -R, starts both and waits until the standby is the primary's synchronous
// one. Both are stopped and their directories removed when the test ends.
func StartPostgresPair(t testing.TB) *PostgresPair {
	t.Helper()
	bin, err := PostgresBin()
	if err != nil {
		t.Fatal(err)
	}
	cred, err := postgresCredential()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "linli-pgpair-")
	if err != nil {
		t.Fatal(err)
	}
	p := &PostgresPair{t: t, bin: bin, dir: dir, cred: cred}
	t.Cleanup(p.stopAll)
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			t.Fatalf("hand %s to %s: %v", dir, PostgresUser, err)
		}
	}
	p.primary = &pgNode{name: "primary", data: filepath.Join(dir, "primary"), addr: StablePort(t)}
	p.standby = &pgNode{name: StandbyName, data: filepath.Join(dir, StandbyName), addr: StablePort(t),
		// cluster_name is the walreceiver's application_name; a standby
		// that lost its primary retries every 200 ms, not every 5 s.
		args: []string{"-c", "cluster_name=" + StandbyName, "-c", "wal_retrieve_retry_interval=200ms"}}

	p.run("initdb", "-D", p.primary.data, "-U", "linli", "--auth=trust",
		"--encoding=UTF8", "--locale=C", "--no-instructions")
	p.start(p.primary)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, p.nodeURL(p.primary, "postgres"))
	if err != nil {
		t.Fatalf("connect to the primary: %v", err)
	}
	// initdb's pg_hba.conf lets replication connections in from loopback
	// with the --auth method.
	for _, q := range []string{"CREATE ROLE replicator WITH REPLICATION LOGIN", "CREATE DATABASE " + pairDB} {
		if _, err := c.Exec(ctx, q); err != nil {
			_ = c.Close(ctx)
			t.Fatalf("%s: %v", q, err)
		}
	}
	host, port, _ := net.SplitHostPort(p.primary.addr)
	p.run("pg_basebackup", "-h", host, "-p", port, "-U", "replicator", "-D", p.standby.data,
		"-R", "-X", "stream", "--checkpoint=fast", "--no-sync")
	// Set after the clone, not before: until the standby exists every
	// commit would wait for it, and a promoted standby that had copied the
	// setting would wait for a standby of its own.
	for _, q := range []string{"ALTER SYSTEM SET synchronous_standby_names = '" + StandbyName + "'", "SELECT pg_reload_conf()"} {
		if _, err := c.Exec(ctx, q); err != nil {
			_ = c.Close(ctx)
			t.Fatalf("%s: %v", q, err)
		}
	}
	_ = c.Close(ctx)
	p.start(p.standby)
	p.WaitSync(t)
	return p
}

// PrimaryURL is the URL of the database on the first primary alone.
func (p *PostgresPair) PrimaryURL() string { return p.nodeURL(p.primary, pairDB) }

// StandbyURL is the URL of the database on the standby alone (read-only
// until Promote).
func (p *PostgresPair) StandbyURL() string { return p.nodeURL(p.standby, pairDB) }

// URL names both servers, primary first, with target_session_attrs=
// read-write: a connection goes to whichever of them takes writes, as a
// hub's must across a failover.
func (p *PostgresPair) URL() string {
	return "postgres://linli@" + p.primary.addr + "," + p.standby.addr + "/" + pairDB +
		"?sslmode=disable&target_session_attrs=read-write&connect_timeout=5"
}

func (p *PostgresPair) nodeURL(n *pgNode, db string) string {
	return "postgres://linli@" + n.addr + "/" + db + "?sslmode=disable&connect_timeout=5"
}

// Log is what both servers printed, for a failing test's message.
func (p *PostgresPair) Log() string {
	var s string
	for _, n := range []*pgNode{p.primary, p.standby} {
		n.mu.Lock()
		if n.out != nil {
			s += "--- " + n.name + " ---\n" + n.out.String()
		}
		n.mu.Unlock()
	}
	return s
}

// StopPrimary stops the primary at once (immediate shutdown: no
// checkpoint, clients cut off, as in a crash).
func (p *PostgresPair) StopPrimary() { p.stop(p.primary, syscall.SIGQUIT) }

// RestartPrimary restarts the primary as `pg_ctl restart` does (fast
// shutdown: clients are disconnected, transactions in flight roll back),
// on the same port, and waits until it takes connections again.
func (p *PostgresPair) RestartPrimary() {
	p.t.Helper()
	p.stop(p.primary, syscall.SIGINT)
	p.start(p.primary)
}

// StopStandby stops the standby (fast shutdown). The primary's commits
// then wait for it.
func (p *PostgresPair) StopStandby() { p.stop(p.standby, syscall.SIGINT) }

// StartStandby starts the stopped standby again (a running one is left
// as it is); it reconnects to the primary and catches up.
func (p *PostgresPair) StartStandby() {
	p.t.Helper()
	p.standby.mu.Lock()
	running := p.standby.cmd != nil
	p.standby.mu.Unlock()
	if !running {
		p.start(p.standby)
	}
}

// Promote makes the standby a primary (pg_ctl promote, waiting until it
// takes writes). Stop the primary first, as a failover does: two
// primaries would each take writes.
func (p *PostgresPair) Promote() {
	p.t.Helper()
	p.run("pg_ctl", "promote", "-w", "-t", "60", "-D", p.standby.data)
}

// WaitSync waits until the primary reports the standby streaming as its
// synchronous standby.
func (p *PostgresPair) WaitSync(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var state string
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := pgx.Connect(ctx, p.nodeURL(p.primary, "postgres"))
		if err == nil {
			err = c.QueryRow(ctx, "SELECT coalesce(max(sync_state), '') FROM pg_stat_replication WHERE application_name = $1 AND state = 'streaming'", StandbyName).Scan(&state)
			_ = c.Close(ctx)
		}
		cancel()
		if err == nil && state == "sync" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the standby is not the primary's synchronous standby after 60s (state %q, %v)\n%s", state, err, p.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// run runs one of PostgreSQL's programs as the server's user.
func (p *PostgresPair) run(prog string, args ...string) {
	p.t.Helper()
	cmd := exec.Command(filepath.Join(p.bin, prog), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	cmd.Dir = p.dir
	if out, err := cmd.CombinedOutput(); err != nil {
		p.t.Fatalf("%s: %v\n%s\n%s", prog, err, out, p.Log())
	}
}

// start runs postgres on the node's data directory and port and waits
// until it accepts connections (a standby: read-only ones).
func (p *PostgresPair) start(n *pgNode) {
	p.t.Helper()
	_, port, _ := net.SplitHostPort(n.addr)
	out := &SyncBuffer{}
	args := append([]string{"-D", n.data, "-h", "127.0.0.1", "-p", port, "-k", p.dir,
		"-c", "fsync=on", "-c", "synchronous_commit=on", "-c", "wal_level=replica",
		"-c", "max_wal_senders=4", "-c", "max_connections=100", "-c", "shared_buffers=32MB",
		"-c", "dynamic_shared_memory_type=mmap"}, n.args...)
	cmd := exec.Command(filepath.Join(p.bin, "postgres"), args...)
	cmd.Dir = p.dir
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred, Pdeathsig: syscall.SIGINT}
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("start postgres (%s): %v", n.name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	n.mu.Lock()
	n.cmd, n.done, n.out = cmd, done, out
	n.mu.Unlock()
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-done:
			p.t.Fatalf("postgres (%s) exited at start:\n%s", n.name, out.String())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		c, err := pgx.Connect(ctx, p.nodeURL(n, "postgres"))
		cancel()
		if err == nil {
			_ = c.Close(context.Background())
			// Only this node's postmaster counts: one that could not
			// bind its port exits, and whatever answered is another's.
			var own bool
			if own, err = process.ListensOn(cmd.Process.Pid, n.addr); err == nil && own {
				return
			}
			if err == nil {
				err = fmt.Errorf("another process listens on %s", n.addr)
			}
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("postgres (%s) not accepting connections on %s after 60s: %v\n%s", n.name, n.addr, err, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends the node sig (SIGINT fast shutdown, SIGQUIT immediate) and
// waits for it to exit; a stopped node is left as it is.
func (p *PostgresPair) stop(n *pgNode, sig syscall.Signal) {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.cmd = nil
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

func (p *PostgresPair) stopAll() {
	// The standby first: a primary's fast shutdown waits for its WAL
	// senders to hand the standby everything.
	for _, n := range []*pgNode{p.standby, p.primary} {
		if n != nil {
			p.stop(n, syscall.SIGINT)
		}
	}
	if err := os.RemoveAll(p.dir); err != nil {
		p.t.Errorf("remove %s: %v", p.dir, err)
	}
}

// Describe says which server answers at url and what it is: its port,
// database, whether it is in recovery (a standby) and its system
// identifier (a standby's is its primary's), for a failing test's
// message.
func (p *PostgresPair) Describe(url string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		return fmt.Sprintf("%s: %v", url, err)
	}
	defer c.Close(context.Background())
	var port int
	var db string
	var recovery bool
	var sysid int64
	if err := c.QueryRow(ctx, `SELECT inet_server_port(), current_database(), pg_is_in_recovery(),
		(SELECT system_identifier FROM pg_control_system())`).Scan(&port, &db, &recovery, &sysid); err != nil {
		return fmt.Sprintf("%s: %v", url, err)
	}
	return fmt.Sprintf("port %d, database %s, in recovery %v, system %d (pair: %s)", port, db, recovery, sysid, p)
}

// String names the pair's servers, for messages.
func (p *PostgresPair) String() string {
	return fmt.Sprintf("primary %s, standby %s", p.primary.addr, p.standby.addr)
}
