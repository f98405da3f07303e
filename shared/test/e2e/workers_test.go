package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	neturl "net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"linli/shared/event"
	"linli/shared/test/netproxy"
	"linli/shared/test/poll"
	"linli/shared/test/testkit"
)

// Two hub workers on one PostgreSQL and one Mosquitto share four sites:
// each site has one owner; the API of either worker shows every site; a
// write of a site at the worker that does not hold it is refused with 503
// naming the owner. One worker is killed with SIGKILL while the edges of
// all four sites stream: the other holds every site within 10 s, every
// answered event is stored exactly once, and no seat decision is taken
// twice (no two grants of one activity and kiosk with the same seats).
func TestWorkersShareSitesAndFailOver(t *testing.T) {
	t.Parallel()
	url := testkit.StartPostgres(t)
	mq, _ := testkit.Mosquitto(t)
	dir := t.TempDir()
	// The workers of a district sign as one hub, with one key: edges
	// enrolled through either trust both.
	w1 := startHub(t, filepath.Join(dir, "w1"), "", mq, "--store", url, "--lease", "on", "--district", "d1")
	key, err := os.ReadFile(filepath.Join(w1.Data, "hub.key"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "w2"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "w2", "hub.key"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	w2 := startHub(t, filepath.Join(dir, "w2"), "", mq, "--store", url, "--lease", "on", "--district", "d1")
	workers := map[string]*hubProc{"hub-w1": w1, "hub-w2": w2}

	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	owners := func() map[string]string {
		rows, err := conn.Query(ctx, "SELECT site, owner FROM site_leases WHERE expires_at > now()")
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for rows.Next() {
			var site, owner string
			if err := rows.Scan(&site, &owner); err != nil {
				t.Fatal(err)
			}
			out[site] = owner
		}
		return out
	}

	// Edges enrolled through either worker: the registry is shared.
	sites := []string{"s1", "s2", "s3", "s4"}
	var edges []*edgeProc
	for i, site := range sites {
		via := w1
		if i%2 == 1 {
			via = w2
		}
		edges = append(edges, startEnrolledEdge(t, via, "kiosk-"+site, site, "kiosk",
			"--batch-events", "50", "--window", "2"))
	}
	poll.Eventually(t, 30*time.Second, func() (bool, string) {
		o := owners()
		held := map[string]int{}
		for _, w := range o {
			held[w]++
		}
		return len(o) == 4 && held["hub-w1"] == 2 && held["hub-w2"] == 2, fmt.Sprintf("leases %v", o)
	})
	// Each serves what it holds, once taken on.
	poll.Eventually(t, 10*time.Second, func() (bool, string) {
		a, b := metricValue(t, w1.URL, "linli_hub_sites_served"), metricValue(t, w2.URL, "linli_hub_sites_served")
		return a == 2 && b == 2, fmt.Sprintf("sites served %v and %v, want 2 each", a, b)
	})
	own := owners()

	// An activity per site, created at its owner; the other worker
	// refuses it with 503, Retry-After and the owner's name, and then
	// shows the owner's activity.
	start := time.Now().Add(48 * time.Hour).Format(time.RFC3339)
	for _, site := range sites {
		owner := workers[own[site]]
		other := w1
		if owner == w1 {
			other = w2
		}
		act := map[string]any{"id": "A-" + site, "title": "太极拳", "kind": "activity", "site": site, "start": start, "capacity": 40}
		var refused struct{ Owner, Site, Code string }
		code, hdr := doHeader(t, other, "POST", "/api/v1/activities", act, &refused)
		if code != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" || refused.Owner != own[site] || refused.Site != site {
			t.Fatalf("activity of %s at the worker not holding it: %d, Retry-After %q, %+v; want 503 naming %s",
				site, code, hdr.Get("Retry-After"), refused, own[site])
		}
		if code := owner.do(t, "POST", "/api/v1/activities", act, nil); code != 201 {
			t.Fatalf("activity of %s at its owner: %d", site, code)
		}
	}
	for _, h := range []*hubProc{w1, w2} {
		for _, site := range sites {
			poll.Eventually(t, 10*time.Second, func() (bool, string) {
				code := h.do(t, "GET", "/api/v1/activities/A-"+site, nil, nil)
				return code == 200, fmt.Sprintf("%s shows A-%s: %d", h.Data, site, code)
			})
		}
	}

	// Either worker lists every site's devices, held or not.
	for _, h := range []*hubProc{w1, w2} {
		poll.Eventually(t, 20*time.Second, func() (bool, string) {
			var devs []struct{ ID, Site string }
			h.do(t, "GET", "/api/v1/devices", nil, &devs)
			return len(devs) == 4, fmt.Sprintf("%s lists %+v", h.Data, devs)
		})
	}

	// Every site streams; the worker holding s1 is killed mid-stream.
	ledger := testkit.NewLedger()
	var wg sync.WaitGroup
	for _, e := range edges {
		wg.Go(func() {
			load(ctx, t, e, ledger, 1500, 4, false)
			for i := range 20 { // check-ins the kiosks confirm from their shares of seats
				var c created
				testkit.Do(ctx, "POST", e.URL+"/api/v1/checkins", "", map[string]string{
					"resident": fmt.Sprintf("S%s%d", strings.ReplaceAll(e.ID, "-", ""), i), "activity": "A-" + e.ID[len("kiosk-"):]}, &c)
			}
		})
	}
	poll.Eventually(t, 60*time.Second, func() (bool, string) {
		s := edges[0].sync(t)
		return s.AckedSeq > 200, fmt.Sprintf("sync %+v", s)
	})
	victim := own["s1"]
	survivorID := "hub-w1"
	if victim == survivorID {
		survivorID = "hub-w2"
	}
	survivor := workers[survivorID]
	workers[victim].Kill()
	killed := time.Now()
	poll.Eventually(t, 15*time.Second, func() (bool, string) {
		o := owners()
		for _, site := range sites {
			if o[site] != survivorID {
				return false, fmt.Sprintf("leases %v", o)
			}
		}
		return true, ""
	})
	took := time.Since(killed)
	t.Logf("%s's sites held by %s %s after SIGKILL", victim, survivorID, took.Round(100*time.Millisecond))
	if took > 10*time.Second {
		t.Fatalf("sites moved %s after the kill, want within 10 s", took)
	}
	wg.Wait()
	for _, e := range edges {
		drained(t, e, 90*time.Second)
		verify(t, survivor, e, ledger)
	}

	// Each event once in the table, and no grant taken twice.
	var rows, keys int
	if err := conn.QueryRow(ctx, "SELECT count(*), count(DISTINCT (site, device, seq)) FROM events").Scan(&rows, &keys); err != nil {
		t.Fatal(err)
	}
	if rows != keys {
		t.Fatalf("events table: %d rows for %d keys", rows, keys)
	}
	grants := map[string]int{}
	frows, err := conn.Query(ctx, "SELECT key, value FROM hub_kv WHERE key >= 'f/'::bytea AND key < 'f0'::bytea")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for frows.Next() {
		var key, val []byte
		if err := frows.Scan(&key, &val); err != nil {
			t.Fatal(err)
		}
		var sf struct {
			Site  string `cbor:"1,keyasint"`
			Event []byte `cbor:"2,keyasint"`
		}
		if !strings.Contains(string(key), "/hub-w") || event.UnmarshalOwn(val, &sf) != nil || sf.Event == nil {
			continue // an edge's fact
		}
		ev, err := event.DecodeEvent(sf.Event)
		if err != nil {
			t.Fatalf("decision %q: %v", key, err)
		}
		body, err := ev.Decode()
		if err != nil {
			t.Fatalf("decision %q: %v", key, err)
		}
		if g, ok := body.(*event.Grant); ok {
			n++
			grants[fmt.Sprintf("%s/%s/%d", g.Activity, g.Kiosk, g.Seats)]++
		}
	}
	if err := frows.Err(); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("no seat grant was decided")
	}
	for g, c := range grants {
		if c > 1 {
			t.Errorf("grant %s decided %d times", g, c)
		}
	}
	t.Logf("%d grants, each decided once", n)
}

// doHeader is hubProc.do with the answer's header.
func doHeader(t *testing.T, h *hubProc, method, path string, body, out any) (int, http.Header) {
	t.Helper()
	data, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(method, h.URL+path, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+h.token(t))
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatalf("%s %s: %d, answer not JSON: %v", method, path, resp.StatusCode, err)
	}
	return resp.StatusCode, resp.Header
}

// startWorker runs a hub worker on PostgreSQL behind the secure
// Mosquitto, writing the broker's files into the shared mqDir and
// reloading the broker whose pid is in pidFile; it does not wait for the
// worker to connect.
func startWorker(t *testing.T, data, url, mqttAddr, mqDir, pidFile string) *hubProc {
	t.Helper()
	return startWorkerReloading(t, data, url, mqttAddr, mqDir, "test -s "+pidFile+" && kill -HUP $(cat "+pidFile+")")
}

// startWorkerReloading is startWorker with reload as its
// --mosquitto-reload command.
func startWorkerReloading(t *testing.T, data, url, mqttAddr, mqDir, reload string) *hubProc {
	t.Helper()
	hubBin, _ := testkit.Binaries(t)
	httpAddr := testkit.FreePort(t)
	h := &hubProc{URL: "http://" + httpAddr, Data: data, MQTT: "tcp://" + mqttAddr}
	h.Proc = testkit.Start(t, filepath.Base(data), hubBin, []string{"--data", data, "--http", httpAddr,
		"--broker", h.MQTT, "--id", "hub-" + filepath.Base(data), "--store", url, "--lease", "on", "--district", "d1",
		"--mosquitto-files", "--mosquitto-dir", mqDir,
		"--mosquitto-reload", reload, "--log-level", "debug"})
	return h
}

// copyDistrictSecrets gives the worker in data the district's key and
// broker secret from the first worker's.
func copyDistrictSecrets(t *testing.T, from, data string) {
	t.Helper()
	for _, f := range []string{"hub.key", filepath.Join("mosquitto", "hub.password")} {
		b, err := os.ReadFile(filepath.Join(from, f))
		if err != nil {
			t.Fatal(err)
		}
		to := filepath.Join(data, f)
		if err := os.MkdirAll(filepath.Dir(to), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// A worker joining writes the broker's files with its own login, but
// until it is live it was in no other worker's list: a rewrite by
// another worker in between (an enrollment, another worker joining)
// dropped its login, and it never logged in. Here the joining worker's
// own reload never reaches Mosquitto, so it can only get in through the
// first worker's rewrite: its login must be in it.
func TestJoiningWorkerKeepsItsLoginThroughAnotherRewrite(t *testing.T) {
	t.Parallel()
	url, dir, mqttAddr, mqDir, _, w1 := firstWorkerBehindMosquitto(t)

	copyDistrictSecrets(t, w1.Data, filepath.Join(dir, "w2"))
	w2 := startWorkerReloading(t, filepath.Join(dir, "w2"), url, mqttAddr, mqDir, "true")
	// An enrollment through w1 makes it rewrite the files (and reload
	// Mosquitto) once w2 has written its own.
	poll.Eventually(t, 20*time.Second, func() (bool, string) {
		pw, _ := readFile(filepath.Join(mqDir, "passwd"))
		return strings.Contains(string(pw), "hub-w2:"), "w2's own login in the password file"
	})
	startEnrolledEdge(t, w1, "kiosk-s1", "s1", "kiosk")
	poll.Eventually(t, 20*time.Second, func() (bool, string) {
		pw, _ := readFile(filepath.Join(mqDir, "passwd"))
		acl, _ := readFile(filepath.Join(mqDir, "acl"))
		if !strings.Contains(string(pw), "kiosk-s1:") || !strings.Contains(string(acl), "user kiosk-s1") {
			return false, "w1's rewrite with the device enrolled"
		}
		if !strings.Contains(string(pw), "hub-w2:") {
			t.Fatalf("w1's rewrite dropped the joining worker's login:\n%s", pw)
		}
		return true, ""
	})
	poll.Eventually(t, 40*time.Second, func() (bool, string) {
		code, err := testkit.Do(context.Background(), "GET", w2.URL+"/readyz", "", nil, nil)
		return err == nil && code == 200, fmt.Sprintf("w2 ready: %d %v", code, err)
	})
}

// Two workers behind the secure Mosquitto write its one password file and
// ACL: each writes every worker's login and every enrolled device, so
// whichever wrote last, both workers and every edge log in. Edges
// enrolled through either worker sync; after one worker is killed the
// other, with the files as the killed one may have left them, takes
// every site and the edges' events still arrive exactly once.
func TestWorkersShareOneBrokersFiles(t *testing.T) {
	t.Parallel()
	url, dir, mqttAddr, mqDir, pidFile, w1 := firstWorkerBehindMosquitto(t)

	// The second worker gets the district's key and broker secret.
	copyDistrictSecrets(t, w1.Data, filepath.Join(dir, "w2"))
	w2 := startWorker(t, filepath.Join(dir, "w2"), url, mqttAddr, mqDir, pidFile)
	testkit.WaitHTTP(t, w2.URL+"/healthz", 30*time.Second)
	for _, h := range []*hubProc{w1, w2} {
		poll.Eventually(t, 20*time.Second, func() (bool, string) {
			code, err := testkit.Do(context.Background(), "GET", h.URL+"/readyz", "", nil, nil)
			return err == nil && code == 200, fmt.Sprintf("%s ready: %d %v", h.Data, code, err)
		})
	}

	edges := []*edgeProc{startEnrolledEdge(t, w1, "kiosk-s1", "s1", "kiosk"), startEnrolledEdge(t, w2, "kiosk-s2", "s2", "kiosk")}
	ledger := testkit.NewLedger()
	var wg sync.WaitGroup
	for _, e := range edges {
		wg.Go(func() { load(context.Background(), t, e, ledger, 600, 2, false) })
	}
	poll.Eventually(t, 60*time.Second, func() (bool, string) {
		a, b := edges[0].sync(t), edges[1].sync(t)
		return a.AckedSeq > 100 && b.AckedSeq > 100, fmt.Sprintf("sync %+v %+v", a, b)
	})
	w1.Kill()
	wg.Wait()
	for _, e := range edges {
		drained(t, e, 60*time.Second)
		if v := verify(t, w2, e, ledger); v.Present != 600 {
			t.Fatalf("%s: %s", e.ID, v)
		}
	}
}

// A worker cut off from PostgreSQL (a black hole between them) acks
// nothing more: until the other worker holds its sites, no edge of them
// is acked beyond what was committed when the cut began; the other
// worker then takes the sites within 10 s and every event arrives once.
func TestWorkerCutOffFromPostgresStopsAcking(t *testing.T) {
	t.Parallel()
	url := testkit.StartPostgres(t)
	u, err := neturl.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	proxy, err := netproxy.Start(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	cutURL := *u
	cutURL.Host = proxy.Addr()
	mq, _ := testkit.Mosquitto(t)
	dir := t.TempDir()
	w1 := startHub(t, filepath.Join(dir, "w1"), "", mq, "--store", cutURL.String(), "--lease", "on", "--district", "d1")
	key, err := os.ReadFile(filepath.Join(w1.Data, "hub.key"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "w2"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "w2", "hub.key"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	w2 := startHub(t, filepath.Join(dir, "w2"), "", mq, "--store", url, "--lease", "on", "--district", "d1")

	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	owner := func(site string) string {
		var o string
		if err := conn.QueryRow(ctx, "SELECT owner FROM site_leases WHERE site = $1 AND expires_at > now()", site).Scan(&o); err != nil && !errors.Is(err, pgx.ErrNoRows) {
			t.Fatal(err)
		}
		return o
	}
	e1 := startEnrolledEdge(t, w1, "kiosk-c1", "c1", "kiosk", "--batch-events", "20", "--window", "2")
	e2 := startEnrolledEdge(t, w2, "kiosk-c2", "c2", "kiosk", "--batch-events", "20", "--window", "2")
	poll.Eventually(t, 30*time.Second, func() (bool, string) {
		a, b := owner("c1"), owner("c2")
		return a != "" && b != "" && a != b, fmt.Sprintf("owners %q %q", a, b)
	})
	// The edge of w1's site.
	edge := e1
	if owner("c1") != "hub-w1" {
		edge = e2
	}
	site := edge.ID[len("kiosk-"):]

	ledger := testkit.NewLedger()
	var wg sync.WaitGroup
	wg.Go(func() { load(ctx, t, edge, ledger, 1500, 4, false) })
	poll.Eventually(t, 60*time.Second, func() (bool, string) {
		s := edge.sync(t)
		return s.AckedSeq > 100, fmt.Sprintf("sync %+v", s)
	})
	proxy.Cut(netproxy.Blackhole)
	cut := time.Now()
	var stored uint64
	if err := conn.QueryRow(ctx, "SELECT coalesce(max(seq), 0) FROM events WHERE site = $1 AND device = $2", site, edge.ID).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	poll.Eventually(t, 15*time.Second, func() (bool, string) {
		if o := owner(site); o == "hub-w2" {
			return true, ""
		}
		if s := edge.sync(t); s.AckedSeq > stored {
			t.Fatalf("acked up to %d while cut off, %s after the cut; %d was committed", s.AckedSeq, time.Since(cut), stored)
		}
		return false, "the other worker to hold " + site
	})
	took := time.Since(cut)
	t.Logf("%s held by hub-w2 %s after the cut; nothing acked past seq %d meanwhile", site, took.Round(100*time.Millisecond), stored)
	if took > 10*time.Second {
		t.Fatalf("%s moved %s after the cut, want within 10 s", site, took)
	}
	wg.Wait()
	drained(t, edge, 90*time.Second)
	verify(t, w2, edge, ledger)
}

// firstWorkerBehindMosquitto starts a district's first worker on a
// PostgreSQL of its own, writing the secure Mosquitto's files under
// dir/mosquitto, then that Mosquitto from the files once the worker wrote
// them (the pid file tells the worker whom to signal on a rewrite).
func firstWorkerBehindMosquitto(t *testing.T) (url, dir, mqttAddr, mqDir, pidFile string, w1 *hubProc) {
	t.Helper()
	url = testkit.StartPostgres(t)
	dir = t.TempDir()
	mqDir, pidFile = filepath.Join(dir, "mosquitto"), filepath.Join(dir, "mosquitto.pid")
	mqttAddr = testkit.FreePort(t)

	w1 = startWorker(t, filepath.Join(dir, "w1"), url, mqttAddr, mqDir, pidFile)
	poll.Eventually(t, 20*time.Second, func() (bool, string) {
		_, err := readFile(filepath.Join(mqDir, "acl"))
		return err == nil, fmt.Sprint(err)
	})
	_, broker := testkit.MosquittoConf(t, mqttAddr, "mosquitto-secure.conf",
		"password_file "+filepath.Join(mqDir, "passwd"), "acl_file "+filepath.Join(mqDir, "acl"), "user root")
	if err := os.WriteFile(pidFile, []byte(fmt.Sprint(broker.PID())), 0o600); err != nil {
		t.Fatal(err)
	}
	testkit.WaitHTTP(t, w1.URL+"/healthz", 30*time.Second)
	return url, dir, mqttAddr, mqDir, pidFile, w1
}
