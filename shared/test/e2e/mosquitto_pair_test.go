package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"linli/shared/test/poll"
	"linli/shared/test/process"
	"linli/shared/test/testkit"
)

// The shipped Mosquitto pair (configs/mosquitto-pair): brokers A and B
// from a.conf and b.conf, with the logins and ACLs the hub writes (both
// read the one directory here; on two hosts B reads a copy), a hub and two
// enrolled edges listing A then B. A is SIGKILLed while both edges stream
// check-ins: every answered check-in reaches the hub exactly once, through
// B, where the hub and the edges now are. A comes back, and a restarted
// edge goes to A while the hub stays on B: B's bridge to A carries its
// batches and the hub's acks, and again nothing is lost or doubled.
func TestMosquittoPairFailover(t *testing.T) {
	t.Parallel()
	r := newShippedRig(t)
	files := r.dir(t, "files", r.gid, 0o750|os.ModeSetgid) // install -d -g mosquitto -m 2750
	addrA, addrB := testkit.StablePort(t), testkit.FreePort(t)
	urlA, urlB := "tcp://"+addrA, "tcp://"+addrB
	pair := urlA + "," + urlB

	hubBin, _ := testkit.Binaries(t)
	data := filepath.Join(t.TempDir(), "hub")
	httpAddr := testkit.FreePort(t)
	hub := &hubProc{URL: "http://" + httpAddr, Data: data, MQTT: pair}
	hub.Proc = testkit.Start(t, "hub", hubBin, []string{"--data", data, "--http", httpAddr,
		"--broker", pair, "--mosquitto-files", "--mosquitto-bridge", "--mosquitto-dir", files})
	poll.Eventually(t, 10*time.Second, func() (bool, string) {
		_, err := os.Stat(filepath.Join(files, "acl"))
		return err == nil, fmt.Sprint(err)
	})
	bridgePass, err := os.ReadFile(filepath.Join(data, "mosquitto", "bridge.password"))
	if err != nil {
		t.Fatal(err)
	}
	brokerFiles := map[string]string{
		"password_file": filepath.Join(files, "passwd"),
		"acl_file":      filepath.Join(files, "acl"),
	}
	start := func(name, addr string, more map[string]string) *testkit.Proc {
		subst := map[string]string{"persistence_location": r.persistDir(t, name+"-db")}
		for k, v := range brokerFiles {
			subst[k] = v
		}
		for k, v := range more {
			subst[k] = v
		}
		_, p := testkit.MosquittoShipped(t, addr, "mosquitto-pair/"+name+".conf", r.dir(t, name+"-conf", -1, 0o755), subst)
		r.checkUser(t, p)
		return p
	}
	brokerA := start("a", addrA, nil)
	brokerB := start("b", addrB, map[string]string{"address": addrA, "remote_password": strings.TrimSpace(string(bridgePass))})
	testkit.WaitHTTP(t, hub.URL+"/healthz", 30*time.Second)
	onBroker(t, "the hub", hub.Proc, "connected to the external broker", urlA)

	// Enrolled edges: their logins reach both brokers at the next reload.
	ids := []string{"kiosk-1", "kiosk-2"}
	var datas []string
	for _, id := range ids {
		datas = append(datas, enrollEdge(t, hub, id, "s1", "kiosk"))
	}
	for _, b := range []*testkit.Proc{brokerA, brokerB} {
		if err := syscall.Kill(b.PID(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	for i, d := range datas {
		id, _ := readIdentity(t, d)
		for _, url := range []string{urlA, urlB} {
			poll.Eventually(t, 10*time.Second, func() (bool, string) {
				c, err := dial(t, url, id.ID, id.MQTTUsername, id.MQTTPassword)
				if err == nil {
					c.Disconnect(10)
				}
				return err == nil, fmt.Sprintf("%s on %s: %v", ids[i], url, err)
			})
		}
	}
	var edges []*edgeProc
	for i, id := range ids {
		e := startEdgeData(t, id, datas[i], pair)
		edges = append(edges, e)
		onBroker(t, id, e.Proc, "hub session up", urlA)
	}

	// Both edges stream; A dies once the hub has acked part of it.
	ledger := testkit.NewLedger()
	const n = 1500
	loads := make(chan error, len(edges))
	for _, e := range edges {
		go func() { loads <- loadMarkedErr(e, ledger, "A", n) }()
	}
	killedAt := make(chan uint64, 1)
	go func() {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		deadline := time.Now().Add(60 * time.Second)
		for range tick.C {
			if time.Now().After(deadline) {
				break
			}
			var s syncState
			if code, err := testkit.Do(context.Background(), "GET", edges[0].URL+"/api/v1/sync", "", nil, &s); err == nil && code == 200 && s.AckedSeq > 200 {
				brokerA.Kill()
				killedAt <- s.LastSeq
				return
			}
		}
		killedAt <- 0
	}()
	for range edges {
		if err := <-loads; err != nil {
			t.Fatal(err)
		}
	}
	at := <-killedAt
	if at == 0 || at >= n {
		t.Fatalf("A was killed at kiosk-1's seq %d, want while its %d check-ins were under way", at, n)
	}
	t.Logf("A killed at kiosk-1's seq %d of %d", at, n)
	for _, e := range edges {
		drained(t, e, 90*time.Second)
		if v := verify(t, hub, e, ledger); v.Present != n || v.HubCount != n {
			t.Fatalf("%s", v)
		}
		onBroker(t, e.ID, e.Proc, "hub session up", urlB)
	}
	onBroker(t, "the hub", hub.Proc, "connected to the external broker", urlB)

	// A comes back; B's bridge reconnects to it.
	brokerA.Restart()
	if err := process.WaitListening(context.Background(), addrA, 10*time.Second, brokerA.Proc); err != nil {
		t.Fatal(err)
	}
	poll.Eventually(t, 30*time.Second, func() (bool, string) {
		return strings.Contains(brokerA.Log(), "as hub-bridge"), "B's bridge to connect to A"
	})
	// A split: kiosk-1 restarts and takes A, the first of its list; the
	// hub and kiosk-2 stay on B.
	if err := edges[0].Proc.Stop(); err != nil {
		t.Fatal(err)
	}
	edges[0].Proc.Restart()
	testkit.WaitHTTP(t, edges[0].URL+"/healthz", 20*time.Second)
	onBroker(t, "kiosk-1", edges[0].Proc, "hub session up", urlA)
	before := metric(t, hub.URL, "linli_hub_messages_total")
	for _, e := range edges {
		loadMarked(t, e, ledger, "B", 300)
	}
	for _, e := range edges {
		drained(t, e, 60*time.Second)
		if v := verify(t, hub, e, ledger); v.Present != n+300 || v.HubCount != n+300 {
			t.Fatalf("%s", v)
		}
	}
	onBroker(t, "the hub", hub.Proc, "connected to the external broker", urlB)
	onBroker(t, "kiosk-2", edges[1].Proc, "hub session up", urlB)
	// The bridge loops nothing back: the hub got fewer messages than
	// check-ins (about 170: batches and statuses), not an endless echo.
	got := metric(t, hub.URL, "linli_hub_messages_total") - before
	if got > 600 {
		t.Errorf("the hub received %v messages for 600 check-ins: the bridge echoes", got)
	}
	t.Logf("the hub received %v messages for the 600 check-ins after the split", got)
	// B's bridge fails to reach A while A is dead or restarting ("Error
	// creating bridge: Broken pipe", "Connection refused"): expected here,
	// so lines about the bridge are left out; anything else is a fault.
	for _, b := range []*testkit.Proc{brokerA, brokerB} {
		for _, line := range strings.Split(b.Log(), "\n") {
			if strings.Contains(strings.ToLower(line), "bridge") {
				continue
			}
			for _, bad := range []string{"Error", "Unable", "world readable"} {
				if strings.Contains(line, bad) {
					t.Errorf("mosquitto log has %q: %s\n%s", bad, line, b.Log())
				}
			}
		}
	}
}

// onBroker waits until the last line of p's log that says msg names the
// broker url: the hub and edges log the broker each session comes up on.
func onBroker(t *testing.T, who string, p *testkit.Proc, msg, url string) {
	t.Helper()
	poll.Eventually(t, 30*time.Second, func() (bool, string) {
		last := ""
		for _, l := range strings.Split(p.Log(), "\n") {
			if strings.Contains(l, msg) {
				last = l
			}
		}
		return strings.Contains(last, "broker="+url+" ") || strings.HasSuffix(last, "broker="+url),
			fmt.Sprintf("%s on a broker other than %s: %q", who, url, last)
	})
}
