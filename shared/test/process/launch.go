package process

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"linli/shared/test/poll"
)

// Build runs go build in the module root for pkgs (./hub/cmd/linli-hub, …)
// and puts the binaries into dir.
func Build(root, dir string, pkgs ...string) error {
	cmd := exec.Command("go", append([]string{"build", "-o", dir + "/"}, pkgs...)...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", strings.Join(pkgs, " "), err, out)
	}
	return nil
}

// Tail is the last n bytes of the process's log.
func (p *Proc) Tail(n int) string {
	log := p.Log()
	if len(log) > n {
		log = log[len(log)-n:]
	}
	return log
}

// alive fails when the process has ended, quoting the end of its log.
func (p *Proc) alive() error {
	if p.Exited() {
		return fmt.Errorf("%s exited (%v): %s", p.Name, p.Err(), p.Tail(600))
	}
	return nil
}

// WaitListening waits until something accepts TCP connections on addr,
// and gives up at once when p (if not nil) ends. With p, that something
// must be p: a listener of another process on the port does not count.
func WaitListening(ctx context.Context, addr string, timeout time.Duration, p *Proc) error {
	name, check := "listener", func() error { return nil }
	if p != nil {
		name, check = p.Name, p.alive
	}
	err := poll.Until(ctx, timeout, poll.Interval, func() (bool, error) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false, fmt.Errorf("not listening on %s: %w", addr, err)
		}
		if err := c.Close(); err != nil {
			return false, err
		}
		if p == nil {
			return true, nil
		}
		own, err := ListensOn(p.PID(), addr)
		if err == nil && !own {
			err = fmt.Errorf("another process listens on %s", addr)
		}
		return own, err
	}, check)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// Mosquitto says how to run Mosquitto beside the tests and benchmarks.
type Mosquitto struct {
	Bin   string   // the broker, e.g. /usr/sbin/mosquitto
	Base  string   // a shipped config's text
	Addr  string   // loopback address its listener moves to
	Dir   string   // its config, persistence and log go here
	Extra []string // lines appended, each replacing the shipped line of its key
}

// StartMosquitto writes m's config into m.Dir, starts the broker (its log
// in m.Dir/mosquitto.log) and waits until it listens; it returns the
// broker's URL (tcp://ADDR).
func StartMosquitto(ctx context.Context, m Mosquitto) (string, *Proc, error) {
	path := filepath.Join(m.Dir, "mosquitto.conf")
	if err := os.WriteFile(path, []byte(RewriteMosquittoConf(m.Base, m.Addr, m.Dir, m.Extra...)), 0o600); err != nil {
		return "", nil, fmt.Errorf("mosquitto config: %w", err)
	}
	p, err := Start("mosquitto", filepath.Join(m.Dir, "mosquitto.log"), m.Bin, []string{"-c", path})
	if err != nil {
		return "", nil, err
	}
	if err := WaitListening(ctx, m.Addr, 10*time.Second, p); err != nil {
		p.Kill()
		return "", nil, err
	}
	return "tcp://" + m.Addr, p, nil
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
