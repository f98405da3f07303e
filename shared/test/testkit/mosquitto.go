package testkit

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"linli/shared/test/process"
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
	url, pp, err := process.StartMosquitto(context.Background(), process.Mosquitto{
		Bin: MosquittoBin, Base: string(base), Addr: addr, Dir: t.TempDir(), Extra: extra})
	if err != nil {
		t.Fatal(err)
	}
	return url, adopt(t, pp)
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
	path := filepath.Join(dir, filepath.Base(conf)) // conf may name a subdirectory of configs/
	if err := os.WriteFile(path, []byte(out.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	proc = Start(t, "mosquitto", MosquittoBin, []string{"-c", path})
	if err := process.WaitListening(context.Background(), addr, 10*time.Second, proc.Proc); err != nil {
		t.Fatalf("mosquitto with configs/%s: %v\n%s", conf, err, proc.Log())
	}
	return "tcp://" + addr, proc
}
