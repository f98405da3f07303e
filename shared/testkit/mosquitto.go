package testkit

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// MosquittoBin is where Debian installs the broker.
const MosquittoBin = "/usr/sbin/mosquitto"

// Mosquitto starts Debian's Mosquitto with configs/mosquitto.conf on a free
// loopback port and returns its URL (tcp://127.0.0.1:PORT). extra lines are
// appended to the config. The broker stops at the end of the test.
func Mosquitto(t testing.TB, extra ...string) (url string, proc *Proc) {
	t.Helper()
	if _, err := os.Stat(MosquittoBin); err != nil {
		t.Fatalf("mosquitto is not installed (%v): run `apt-get install -y mosquitto` (make test does)", err)
	}
	base, err := os.ReadFile(filepath.Join(Root(), "configs", "mosquitto.conf"))
	if err != nil {
		t.Fatal(err)
	}
	addr := FreePort(t)
	_, port, _ := net.SplitHostPort(addr)
	dir := t.TempDir()
	var conf strings.Builder
	for _, line := range strings.Split(string(base), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "listener ") {
			line = "listener " + port + " 127.0.0.1"
		}
		conf.WriteString(line + "\n")
	}
	fmt.Fprintf(&conf, "persistence_location %s/\n", dir)
	for _, l := range extra {
		conf.WriteString(l + "\n")
	}
	path := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(path, []byte(conf.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	proc = Start(t, "mosquitto", MosquittoBin, []string{"-c", path})
	Eventually(t, 10*time.Second, func() (bool, string) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false, fmt.Sprintf("mosquitto not listening on %s: %v", addr, err)
		}
		c.Close()
		return true, ""
	})
	return "tcp://" + addr, proc
}
