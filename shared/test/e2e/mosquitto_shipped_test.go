package e2e

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"linli/shared/test/poll"
	"linli/shared/test/testkit"
)

// The shipped Mosquitto configs start as shipped, under Mosquitto's own
// user as Debian's systemd unit runs it, and carry an edge's events to the
// hub: the plain one with an anonymous demo device, the secure one with the
// password file and ACL the hub writes for enrolled devices — in a setgid
// directory made as the install steps say, or in one the hub makes itself
// with --mosquitto-group.
func TestShippedMosquittoConfigs(t *testing.T) {
	t.Parallel()
	r := newShippedRig(t)
	t.Run("plain", func(t *testing.T) {
		conf, persist := r.dir(t, "plain-conf", -1, 0o755), r.persistDir(t, "plain-db")
		addr := testkit.FreePort(t)
		url, broker := testkit.MosquittoShipped(t, addr, "mosquitto.conf", conf,
			map[string]string{"persistence_location": persist})
		r.checkUser(t, broker)
		hub := startHub(t, filepath.Join(t.TempDir(), "hub"), "", url)
		e := startEdge(t, "kiosk-1", "s1", "kiosk", url)
		if code := e.do(t, "POST", "/api/v1/checkins", map[string]string{"resident": "R1", "activity": "A1"}, nil); code != 201 {
			t.Fatal(code)
		}
		drained(t, e, 30*time.Second)
		hubHolds(t, hub, "kiosk-1", 1)
		r.stopped(t, broker, persist)
	})
	for _, setgidDir := range []bool{true, false} {
		name := "secure-group-flag"
		if setgidDir {
			name = "secure-setgid-dir"
		}
		t.Run(name, func(t *testing.T) { r.secure(t, name, setgidDir) })
	}
}

type shippedRig struct {
	root     string // a directory Mosquitto's user can enter
	asRoot   bool
	uid, gid int    // Mosquitto's user, when root
	uidText  string // as /proc shows it
}

func newShippedRig(t *testing.T) *shippedRig {
	// Outside the test's private (0700) temp dirs.
	root, err := os.MkdirTemp("", "linli-mosquitto-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	r := &shippedRig{root: root, asRoot: os.Geteuid() == 0, uid: -1, gid: -1}
	if !r.asRoot {
		// Started as anyone else, Mosquitto stays that user.
		t.Log("not root: Mosquitto runs as this user; its drop to the mosquitto user is not tested (CI runs as root)")
		return r
	}
	mq, err := user.Lookup("mosquitto")
	if err != nil {
		t.Fatalf("no mosquitto user (%v): install Debian's mosquitto package (make deps)", err)
	}
	r.uidText = mq.Uid
	r.uid, _ = strconv.Atoi(mq.Uid)
	r.gid, _ = strconv.Atoi(mq.Gid)
	return r
}

// dir makes a directory under root, given to group gid when root.
func (r *shippedRig) dir(t *testing.T, name string, gid int, mode os.FileMode) string {
	t.Helper()
	d := filepath.Join(r.root, name)
	if err := os.Mkdir(d, 0o700); err != nil {
		t.Fatal(err)
	}
	if r.asRoot && gid >= 0 {
		if err := os.Chown(d, -1, gid); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(d, mode); err != nil {
		t.Fatal(err)
	}
	return d
}

// persistDir is persistence_location as the Debian package makes
// /var/lib/mosquitto: owned by Mosquitto's user.
func (r *shippedRig) persistDir(t *testing.T, name string) string {
	t.Helper()
	d := r.dir(t, name, -1, 0o755)
	if r.asRoot {
		if err := os.Chown(d, r.uid, r.gid); err != nil {
			t.Fatal(err)
		}
	}
	return d + "/"
}

// checkUser fails unless Mosquitto dropped to its own user.
func (r *shippedRig) checkUser(t *testing.T, p *testkit.Proc) {
	t.Helper()
	if !r.asRoot {
		return
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.PID()))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[0] == "Uid:" && f[1] != r.uidText {
			t.Fatalf("mosquitto runs as uid %s, not the mosquitto user's %s", f[1], r.uidText)
		}
	}
}

// stopped stops Mosquitto and checks it complained of nothing and saved
// its retained statuses and sessions where the config says.
func (r *shippedRig) stopped(t *testing.T, p *testkit.Proc, persist string) {
	t.Helper()
	if err := p.Stop(); err != nil {
		t.Errorf("mosquitto stop: %v", err)
	}
	log := p.Log()
	for _, bad := range []string{"Error", "Unable", "Warning", "world readable"} {
		if strings.Contains(log, bad) {
			t.Errorf("mosquitto log has %q:\n%s", bad, log)
		}
	}
	if _, err := os.Stat(filepath.Join(persist, "mosquitto.db")); err != nil {
		t.Errorf("no persistence file: %v\n%s", err, log)
	}
}

func (r *shippedRig) secure(t *testing.T, name string, setgidDir bool) {
	files := filepath.Join(r.root, name)
	hubBin, _ := testkit.Binaries(t)
	data := filepath.Join(t.TempDir(), "hub")
	addr, httpAddr := testkit.FreePort(t), testkit.FreePort(t)
	hub := &hubProc{URL: "http://" + httpAddr, Data: data, MQTT: "tcp://" + addr}
	args := []string{"--data", data, "--http", httpAddr, "--broker", hub.MQTT,
		"--mosquitto-files", "--mosquitto-dir", files}
	if setgidDir {
		// install -d -o linli -g mosquitto -m 2750
		r.dir(t, name, r.gid, 0o750|os.ModeSetgid)
	} else if r.asRoot {
		args = append(args, "--mosquitto-group", "mosquitto")
	}
	hub.Proc = testkit.Start(t, "hub", hubBin, args)
	poll.Eventually(t, 10*time.Second, func() (bool, string) {
		_, err := os.Stat(filepath.Join(files, "acl"))
		return err == nil, fmt.Sprint(err)
	})
	for _, f := range []string{"passwd", "acl"} {
		fi, err := os.Stat(filepath.Join(files, f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o640 {
			t.Errorf("%s mode %v, want 0640", f, fi.Mode().Perm())
		}
		if st := fi.Sys().(*syscall.Stat_t); r.asRoot && int(st.Gid) != r.gid {
			t.Errorf("%s group %d, want mosquitto's %d", f, st.Gid, r.gid)
		}
	}
	conf, persist := r.dir(t, name+"-conf", -1, 0o755), r.persistDir(t, name+"-db")
	_, broker := testkit.MosquittoShipped(t, addr, "mosquitto-secure.conf", conf, map[string]string{
		"password_file":        filepath.Join(files, "passwd"),
		"acl_file":             filepath.Join(files, "acl"),
		"persistence_location": persist,
	})
	r.checkUser(t, broker)
	testkit.WaitHTTP(t, hub.URL+"/healthz", 30*time.Second)
	data1 := enrollEdge(t, hub, "kiosk-1", "s1", "kiosk")
	if err := syscall.Kill(broker.PID(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	e := startEdgeData(t, "kiosk-1", data1, hub.MQTT)
	if code := e.do(t, "POST", "/api/v1/checkins", map[string]string{"resident": "R1", "activity": "A1"}, nil); code != 201 {
		t.Fatal(code)
	}
	drained(t, e, 30*time.Second)
	hubHolds(t, hub, "kiosk-1", 1)
	r.stopped(t, broker, persist)
}

// hubHolds checks that the hub holds n events of device.
func hubHolds(t *testing.T, h *hubProc, device string, n int) {
	t.Helper()
	evs, err := testkit.FetchEvents(t.Context(), h.URL, h.token(t), device)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != n {
		t.Fatalf("hub holds %d events of %s, want %d", len(evs), device, n)
	}
}
