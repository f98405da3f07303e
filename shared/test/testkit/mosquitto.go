package testkit

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"linli/shared/test/poll"
)

// MosquittoBin is where Debian installs the broker.
const MosquittoBin = "/usr/sbin/mosquitto"

// Mosquitto starts Debian's Mosquitto with configs/mosquitto.conf on a free
// loopback port and returns its URL (tcp://127.0.0.1:PORT). extra lines are
// appended to the config. The broker stops at the end of the test.
func Mosquitto(t testing.TB, extra ...string) (url string, proc *Proc) {
	t.Helper()
	return MosquittoConf(t, FreePort(t), "mosquitto.conf", extra...)
}

// MosquittoConf starts Mosquitto on addr with configs/<conf>, its listener
// moved to addr, and extra lines appended (which override earlier ones).
func MosquittoConf(t testing.TB, addr, conf string, extra ...string) (url string, proc *Proc) {
	t.Helper()
	if _, err := os.Stat(MosquittoBin); err != nil {
		t.Fatalf("mosquitto is not installed (%v): run `apt-get install -y mosquitto` (make test does)", err)
	}
	base, err := os.ReadFile(filepath.Join(Root(), "configs", conf))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	confText := RewriteMosquittoConf(string(base), addr, dir, extra...)
	path := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(path, []byte(confText), 0o600); err != nil {
		t.Fatal(err)
	}
	proc = Start(t, "mosquitto", MosquittoBin, []string{"-c", path})
	poll.Eventually(t, 10*time.Second, func() (bool, string) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false, fmt.Sprintf("mosquitto not listening on %s: %v", addr, err)
		}
		c.Close()
		return true, ""
	})
	return "tcp://" + addr, proc
}

// RewriteMosquittoConf is a shipped Mosquitto config made to run beside
// the tests and benchmarks: its listener moved to addr on loopback, its
// persistence into dir (Mosquitto refuses a second persistence_location),
// and extra lines appended, each replacing the shipped line of its key.
func RewriteMosquittoConf(base, addr, dir string, extra ...string) string {
	_, port, _ := net.SplitHostPort(addr)
	var conf strings.Builder
	overridden := map[string]bool{}
	for _, l := range extra {
		if f := strings.Fields(l); len(f) > 0 {
			overridden[f[0]] = true
		}
	}
	for _, line := range strings.Split(base, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) > 0 && f[0] == "listener":
			line = "listener " + port + " 127.0.0.1"
		case len(f) > 0 && (f[0] == "persistence_location" || overridden[f[0]]):
			continue
		}
		conf.WriteString(line + "\n")
	}
	fmt.Fprintf(&conf, "persistence_location %s/\n", dir)
	for _, l := range extra {
		conf.WriteString(l + "\n")
	}
	return conf.String()
}

// MosquittoShipped starts Debian's Mosquitto with configs/<conf> as
// shipped, the way its systemd unit does: started as root, Mosquitto drops
// to its own user before it opens its files. Only the listener (moved to
// addr) and the lines whose keys subst names are changed; every key in
// subst must be in the shipped file. dir must be a directory Mosquitto's
// user can enter. Run as another user, Mosquitto keeps that user.
func MosquittoShipped(t testing.TB, addr, conf, dir string, subst map[string]string) (url string, proc *Proc) {
	t.Helper()
	if _, err := os.Stat(MosquittoBin); err != nil {
		t.Fatalf("mosquitto is not installed (%v): run `apt-get install -y mosquitto` (make test does)", err)
	}
	base, err := os.ReadFile(filepath.Join(Root(), "configs", conf))
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(addr)
	seen := map[string]bool{}
	var out strings.Builder
	for _, line := range strings.Split(string(base), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && f[0] == "listener" {
			line = "listener " + port + " 127.0.0.1"
		} else if len(f) > 0 {
			if v, ok := subst[f[0]]; ok {
				line, seen[f[0]] = f[0]+" "+v, true
			}
		}
		out.WriteString(line + "\n")
	}
	for k := range subst {
		if !seen[k] {
			t.Fatalf("configs/%s has no %q line to point at the test's directory", conf, k)
		}
	}
	path := filepath.Join(dir, conf)
	if err := os.WriteFile(path, []byte(out.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	proc = Start(t, "mosquitto", MosquittoBin, []string{"-c", path})
	poll.Eventually(t, 10*time.Second, func() (bool, string) {
		if proc.Exited() {
			t.Fatalf("mosquitto with configs/%s exited:\n%s", conf, proc.Log())
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false, fmt.Sprintf("mosquitto not listening on %s: %v", addr, err)
		}
		c.Close()
		return true, ""
	})
	return "tcp://" + addr, proc
}
