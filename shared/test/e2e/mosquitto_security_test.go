package e2e

import (
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"linli/shared/test/poll"
	"linli/shared/test/testkit"
)

// With Mosquitto as the broker, the hub writes its password file and ACL
// from the device registry: enrolled devices log in with their own
// credentials and reach only their own topics; revoked ones are out.
func TestMosquittoDeviceLogins(t *testing.T) {
	t.Parallel()
	hub, broker := startHubBehindMosquitto(t)
	reload := func() {
		if err := syscall.Kill(broker.PID(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	data1 := enrollEdge(t, hub, "kiosk-1", "s1", "kiosk")
	data2 := enrollEdge(t, hub, "kiosk-2", "s2", "kiosk")
	reload()
	id1, _ := readIdentity(t, data1)
	id2, _ := readIdentity(t, data2)
	// Mosquitto reloads asynchronously: wait until kiosk-1's login works.
	var c1 mqtt.Client
	poll.Eventually(t, 10*time.Second, func() (bool, string) {
		var err error
		c1, err = dial(t, hub.MQTT, id1.ID, id1.MQTTUsername, id1.MQTTPassword)
		return err == nil, fmt.Sprint(err)
	})
	c1.Disconnect(10)

	e1 := startEdgeData(t, "kiosk-1", data1, hub.MQTT)
	poll.Eventually(t, 20*time.Second, func() (bool, string) { return e1.sync(t).Connected, "kiosk-1 not connected" })
	if code := e1.do(t, "POST", "/api/v1/checkins", map[string]string{"resident": "R1", "activity": "A1"}, nil); code != 201 {
		t.Fatal(code)
	}
	drained(t, e1, 20*time.Second)

	for _, creds := range [][3]string{{"kiosk-1", "kiosk-1", "wrong"}, {"kiosk-1", "", ""}, {"intruder", "intruder", "x"}} {
		if _, err := dial(t, hub.MQTT, creds[0], creds[1], creds[2]); err == nil {
			t.Errorf("Mosquitto let %q in with %q/%q", creds[0], creds[1], creds[2])
		}
	}
	if !e1.sync(t).Connected {
		t.Error("the real kiosk-1 lost its session to an impersonation attempt")
	}
	// kiosk-2's valid login reads nothing of kiosk-1 or of site s1.
	c2, err := dial(t, hub.MQTT, id2.ID, id2.MQTTUsername, id2.MQTTPassword)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 8)
	for _, f := range []string{"#", "linli/v1/s1/kiosk-1/ack", "linli/v1/s1/all/down"} {
		c2.Subscribe(f, 1, func(_ mqtt.Client, m mqtt.Message) { got <- m.Topic() }).WaitTimeout(5 * time.Second)
	}
	if code := e1.do(t, "POST", "/api/v1/checkins", map[string]string{"resident": "R2", "activity": "A1"}, nil); code != 201 {
		t.Fatal(code)
	}
	drained(t, e1, 20*time.Second)
	select {
	case topic := <-got:
		t.Fatalf("kiosk-2 received %s", topic)
	default:
	}
	// Revoked: the files drop kiosk-2, and after a reload its login fails.
	if code := hub.do(t, "DELETE", "/api/v1/devices/kiosk-2", nil, nil); code != 200 {
		t.Fatal(code)
	}
	c2.Disconnect(10)
	reload()
	poll.Eventually(t, 10*time.Second, func() (bool, string) {
		_, err := dial(t, hub.MQTT, id2.ID, id2.MQTTUsername, id2.MQTTPassword)
		return err != nil, "revoked kiosk-2 still logs in"
	})
}

// startEdgeData runs an edge on an already enrolled data dir.
func startEdgeData(t *testing.T, id, data, broker string, extra ...string) *edgeProc {
	t.Helper()
	_, edgeBin := testkit.Binaries(t)
	httpAddr := testkit.FreePort(t)
	args := []string{"--data", data, "--http", httpAddr, "--broker", broker,
		"--backoff-max", "500ms", "--ack-timeout", "2s", "--keepalive", "2s"}
	e := &edgeProc{ID: id, URL: "http://" + httpAddr, Data: data}
	e.Proc = testkit.Start(t, id, edgeBin, append(args, extra...))
	testkit.WaitHTTP(t, e.URL+"/healthz", 20*time.Second)
	return e
}

// With Mosquitto, a revoked device's session lasts until Mosquitto reloads
// its files; the hub still shows it offline at once, and its retained
// "online" status does not bring it back when the hub restarts.
func TestMosquittoRevokedGoesOffline(t *testing.T) {
	t.Parallel()
	hub, broker := startHubBehindMosquitto(t)
	data1 := enrollEdge(t, hub, "kiosk-1", "s1", "kiosk")
	data2 := enrollEdge(t, hub, "kiosk-2", "s1", "kiosk")
	if err := syscall.Kill(broker.PID(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	id2, _ := readIdentity(t, data2)
	poll.Eventually(t, 10*time.Second, func() (bool, string) {
		c, err := dial(t, hub.MQTT, id2.ID, id2.MQTTUsername, id2.MQTTPassword)
		if err == nil {
			c.Disconnect(10)
		}
		return err == nil, fmt.Sprint(err)
	})
	startEdgeData(t, "kiosk-1", data1, hub.MQTT)
	e2 := startEdgeData(t, "kiosk-2", data2, hub.MQTT)
	online := func() map[string]bool {
		var ds []struct {
			ID     string `json:"id"`
			Online bool   `json:"online"`
		}
		hub.do(t, "GET", "/api/v1/devices", nil, &ds)
		out := map[string]bool{}
		for _, d := range ds {
			out[d.ID] = d.Online
		}
		return out
	}
	poll.Eventually(t, 20*time.Second, func() (bool, string) {
		o := online()
		return o["kiosk-1"] && o["kiosk-2"] && metric(t, hub.URL, "linli_hub_devices_online") == 2, fmt.Sprintf("online %v", o)
	})
	if code := hub.do(t, "DELETE", "/api/v1/devices/kiosk-2", nil, nil); code != 200 {
		t.Fatal(code)
	}
	// No reload: Mosquitto keeps kiosk-2's session, yet it is offline now.
	poll.Eventually(t, 5*time.Second, func() (bool, string) {
		o := online()
		return !o["kiosk-2"] && o["kiosk-1"] && metric(t, hub.URL, "linli_hub_devices_online") == 1, fmt.Sprintf("online %v", o)
	})
	if !e2.sync(t).Connected {
		t.Fatal("kiosk-2's session ended: the test no longer shows a revoked device with a live session")
	}
	// What it sends now is refused, and the hub's signed answer makes it
	// ask the hub, which says it is revoked.
	if code := e2.do(t, "POST", "/api/v1/checkins", map[string]string{"resident": "R9", "activity": "A1"}, nil); code != 201 {
		t.Fatal(code)
	}
	poll.Eventually(t, 20*time.Second, func() (bool, string) {
		s := e2.identity(t)
		return s.Identity == "revoked", fmt.Sprintf("revoked kiosk-2 %+v", s)
	})
	// The hub restarts and reads the retained statuses again: kiosk-1's
	// brings it back online, kiosk-2 stays offline.
	if err := hub.Stop(); err != nil {
		t.Fatal(err)
	}
	hub.Restart()
	testkit.WaitHTTP(t, hub.URL+"/healthz", 30*time.Second)
	poll.Eventually(t, 20*time.Second, func() (bool, string) {
		o := online()
		return o["kiosk-1"], fmt.Sprintf("online %v", o)
	})
	if o := online(); o["kiosk-2"] || metric(t, hub.URL, "linli_hub_devices_online") != 1 {
		t.Fatalf("revoked kiosk-2 is back online after the hub's restart: %v", o)
	}
}

// startHubBehindMosquitto runs a hub that writes Mosquitto's password file
// and ACL from its registry (--mosquitto-files) and Debian's Mosquitto with
// the shipped secure config reading them; the hub connects as soon as
// Mosquitto is up.
func startHubBehindMosquitto(t *testing.T) (*hubProc, *testkit.Proc) {
	t.Helper()
	hubBin, _ := testkit.Binaries(t)
	data := filepath.Join(t.TempDir(), "hub")
	mqttAddr, httpAddr := testkit.FreePort(t), testkit.FreePort(t)
	hub := &hubProc{URL: "http://" + httpAddr, Data: data, MQTT: "tcp://" + mqttAddr}
	hub.Proc = testkit.Start(t, "hub", hubBin, []string{"--data", data, "--http", httpAddr,
		"--broker", hub.MQTT, "--mosquitto-files"})
	poll.Eventually(t, 10*time.Second, func() (bool, string) {
		_, err := readFile(filepath.Join(data, "mosquitto", "acl"))
		return err == nil, fmt.Sprint(err)
	})
	_, broker := testkit.MosquittoConf(t, mqttAddr, "mosquitto-secure.conf",
		"password_file "+filepath.Join(data, "mosquitto", "passwd"),
		"acl_file "+filepath.Join(data, "mosquitto", "acl"),
		"user root")
	testkit.WaitHTTP(t, hub.URL+"/healthz", 30*time.Second)
	return hub, broker
}
