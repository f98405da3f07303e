package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"linli/shared/event"
	"linli/shared/identity"
	"linli/shared/test/poll"
	"linli/shared/test/testkit"
	"linli/shared/wire"
)

type stolen struct {
	ID           string `json:"id"`
	Site         string `json:"site"`
	MQTTUsername string `json:"mqtt_username"`
	MQTTPassword string `json:"mqtt_password"`
}

func readIdentity(t *testing.T, data string) (stolen, []byte) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(data, "identity", "identity.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s stolen
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	return s, b
}

func dial(t *testing.T, broker, clientID, user, pass string) (mqtt.Client, error) {
	t.Helper()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(broker).SetClientID(clientID).
		SetUsername(user).SetPassword(pass).SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(5 * time.Second))
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return nil, fmt.Errorf("connect timed out")
	}
	if tok.Error() != nil {
		return nil, tok.Error()
	}
	t.Cleanup(func() { c.Disconnect(50) })
	return c, nil
}

func metric(t *testing.T, url, name string) float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", url+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, name+" ") {
			var v float64
			if _, err := fmt.Sscan(strings.TrimPrefix(line, name+" "), &v); err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}

// Nobody impersonates a device or reads another's topics; forged and
// replayed data changes nothing; revoked devices stay out.
func TestDeviceSecurity(t *testing.T) {
	t.Parallel()
	mqttAddr := testkit.FreePort(t)
	h := startHub(t, filepath.Join(t.TempDir(), "hub"), mqttAddr, "")
	k1 := startEnrolledEdge(t, h, "kiosk-1", "s1", "kiosk")
	k2 := startEnrolledEdge(t, h, "kiosk-2", "s2", "kiosk")
	for _, k := range []*edgeProc{k1, k2} {
		poll.Eventually(t, 20*time.Second, func() (bool, string) { return k.sync(t).Connected, k.ID + " not connected" })
	}
	connects := metric(t, k1.URL, "linli_edge_uplink_connects_total")

	t.Run("impersonation is refused and the real device stays connected", func(t *testing.T) {
		for _, creds := range [][2]string{{"", ""}, {"kiosk-1", "guess"}, {"kiosk-2", readPassword(t, k2.Data)}} {
			if _, err := dial(t, h.MQTT, "kiosk-1", creds[0], creds[1]); err == nil {
				t.Fatalf("connected as kiosk-1 with %q/%q", creds[0], creds[1])
			}
		}
		if !k1.sync(t).Connected || metric(t, k1.URL, "linli_edge_uplink_connects_total") != connects {
			t.Fatal("the real kiosk-1 was disconnected by an impersonation attempt")
		}
	})

	id1, _ := readIdentity(t, k1.Data)
	// A stolen but valid login of kiosk-2, used to try everything else.
	id2, _ := readIdentity(t, k2.Data)
	c, err := dial(t, h.MQTT, id2.ID, id2.MQTTUsername, id2.MQTTPassword)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("subscriptions beyond the device's own are denied", func(t *testing.T) {
		got := make(chan string, 16)
		for _, f := range []string{"#", "linli/v1/+/+/up", "linli/v1/s1/kiosk-1/ack", "linli/v1/s1/all/down", "linli/v1/s1/kiosk-1/down", "$SYS/#"} {
			tok := c.Subscribe(f, 1, func(_ mqtt.Client, m mqtt.Message) { got <- m.Topic() })
			tok.WaitTimeout(5 * time.Second)
			st, _ := tok.(*mqtt.SubscribeToken)
			if tok.Error() == nil && st != nil && st.Result()[f] != 0x80 {
				t.Errorf("subscribe %q granted (%v)", f, st.Result())
			}
		}
		// Activity on kiosk-1 produces acks and downlink for s1: none may
		// reach kiosk-2's login.
		if code := k1.do(t, "POST", "/api/v1/checkins", map[string]string{"resident": "R1", "activity": "A1"}, nil); code != 201 {
			t.Fatal(code)
		}
		drained(t, k1, 20*time.Second)
		select {
		case topic := <-got:
			t.Fatalf("a message on %s was delivered to another device", topic)
		default:
		}
	})

	t.Run("publishing under another device is rejected and counted", func(t *testing.T) {
		before := metric(t, h.URL, `linli_hub_acl_refused_total{what="publish"}`)
		c.Publish("linli/v1/s1/kiosk-1/up", 1, false, []byte("x")).WaitTimeout(2 * time.Second)
		poll.Eventually(t, 10*time.Second, func() (bool, string) {
			n := metric(t, h.URL, `linli_hub_acl_refused_total{what="publish"}`)
			return n > before, fmt.Sprintf("refused publishes %v", n)
		})
	})

	// kiosk-1's own key, stolen from its data dir, to craft batches with.
	key, err := identity.LoadKey(filepath.Join(k1.Data, "identity", "device.key"))
	if err != nil {
		t.Fatal(err)
	}
	other, err := identity.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := k1.Stop(); err != nil { // the attacker takes kiosk-1's place
		t.Fatal(err)
	}
	evil, err := dial(t, h.MQTT, "kiosk-1", id1.MQTTUsername, id1.MQTTPassword)
	if err != nil {
		t.Fatal(err)
	}
	batch := func(seq uint64, title string) []byte {
		ev, err := event.NewEvent("", seq, 1<<40, &event.Report{Category: "noise", Title: title, Building: "B1"})
		if err != nil {
			t.Fatal(err)
		}
		b, err := wire.NewBatch(seq, seq, []event.Event{ev}, false, 1)
		if err != nil {
			t.Fatal(err)
		}
		p, err := wire.Encode(wire.Up{Batch: b})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	publish := func(payload []byte) {
		tok := evil.Publish("linli/v1/s1/kiosk-1/up", 1, false, payload)
		if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}
	forged := metric(t, h.URL, "linli_hub_forged_total")

	t.Run("flipped bits, foreign keys and unsigned batches are rejected", func(t *testing.T) {
		signed, err := identity.Sign(key, "kiosk-1", batch(2, "forged"))
		if err != nil {
			t.Fatal(err)
		}
		flipped := append([]byte(nil), signed...)
		flipped[len(flipped)/2] ^= 0x04
		byOther, err := identity.Sign(other, "kiosk-1", batch(2, "forged"))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range [][]byte{flipped, byOther, batch(2, "unsigned")} {
			publish(p)
		}
		poll.Eventually(t, 10*time.Second, func() (bool, string) {
			n := metric(t, h.URL, "linli_hub_forged_total")
			return n >= forged+3, fmt.Sprintf("forged count %v, want %v", n, forged+3)
		})
		evs, err := testkit.FetchEvents(context.Background(), h.URL, h.token(t), "kiosk-1")
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != 1 {
			t.Fatalf("hub holds %d events of kiosk-1, want only the real check-in", len(evs))
		}
	})

	t.Run("a replayed batch changes nothing", func(t *testing.T) {
		evs, _ := testkit.FetchEvents(context.Background(), h.URL, h.token(t), "kiosk-1")
		first := evs[0]
		// The real seq 1 again, as if recorded and replayed hours later,
		// with other content: the hub keeps what it has.
		replay, err := identity.Sign(key, "kiosk-1", batch(1, "replayed"))
		if err != nil {
			t.Fatal(err)
		}
		before := metric(t, h.URL, "linli_hub_duplicates_total")
		publish(replay)
		poll.Eventually(t, 10*time.Second, func() (bool, string) {
			return metric(t, h.URL, "linli_hub_duplicates_total") > before, "duplicate not counted"
		})
		after, _ := testkit.FetchEvents(context.Background(), h.URL, h.token(t), "kiosk-1")
		if len(after) != 1 || after[0].Kind != first.Kind || after[0].HLC != first.HLC {
			t.Fatalf("replay changed the hub: %+v", after)
		}
	})

	t.Run("a revoked device is refused", func(t *testing.T) {
		if code := h.do(t, "DELETE", "/api/v1/devices/kiosk-2", nil, nil); code != 200 {
			t.Fatalf("revoke: %d", code)
		}
		poll.Eventually(t, 10*time.Second, func() (bool, string) {
			return !k2.sync(t).Connected, "kiosk-2 still connected after revocation"
		})
		if _, err := dial(t, h.MQTT, id2.ID, id2.MQTTUsername, id2.MQTTPassword); err == nil {
			t.Fatal("revoked kiosk-2 connected again")
		}
		if code := h.do(t, "DELETE", "/api/v1/devices/nobody", nil, nil); code != 404 {
			t.Fatalf("revoke unknown: %d, want 404", code)
		}
	})
}

func readPassword(t *testing.T, data string) string {
	s, _ := readIdentity(t, data)
	return s.MQTTPassword
}

// Enrollment tokens are one-time and refused clearly when bad.
func TestEnrollment(t *testing.T) {
	t.Parallel()
	mqttAddr := testkit.FreePort(t)
	h := startHub(t, filepath.Join(t.TempDir(), "hub"), mqttAddr, "")
	_, edgeBin := testkit.Binaries(t)
	var tok struct{ Token, Expires string }
	if code := h.do(t, "POST", "/api/v1/devices", map[string]string{"id": "gw-1", "site": "s1", "role": "gateway"}, &tok); code != 201 {
		t.Fatal(code)
	}
	if _, err := time.Parse(time.RFC3339, tok.Expires); err != nil {
		t.Fatalf("expires %q: %v", tok.Expires, err)
	}
	enroll := func(token string) (string, error) {
		out, err := exec.Command(edgeBin, "enroll", "--hub", h.URL, "--token", token, "--data", filepath.Join(t.TempDir(), "e")).CombinedOutput()
		return string(out), err
	}
	if out, err := enroll(tok.Token); err != nil {
		t.Fatalf("enroll: %v %s", err, out)
	}
	out, err := enroll(tok.Token)
	if err == nil || !strings.Contains(out, "already used") {
		t.Fatalf("second use of a token: %v %q", err, out)
	}
	if out, err := enroll("lt1.AAAAAAAAAAAAAAAAAAAAAAAA"); err == nil || !strings.Contains(out, "refused") {
		t.Fatalf("unknown token: %v %q", err, out)
	}
	if out, err := enroll("nonsense"); err == nil || !strings.Contains(out, "token") {
		t.Fatalf("malformed token: %v %q", err, out)
	}
	// The command-line way prints the token on its last line.
	hubBin, _ := testkit.Binaries(t)
	cmd := exec.Command(hubBin, "device", "add", "--hub", h.URL, "--data", h.Data, "--id", "kiosk-9", "--site", "s1", "--role", "kiosk")
	b, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if out, err := enroll(lines[len(lines)-1]); err != nil {
		t.Fatalf("enroll with the CLI's token: %v %s", err, out)
	}
	var bad struct{ Field string }
	if code := h.do(t, "POST", "/api/v1/devices", map[string]string{"id": "a/b", "site": "s1", "role": "kiosk"}, &bad); code != 400 || bad.Field != "id" {
		t.Fatalf("bad id: %d %+v", code, bad)
	}
	if code, _ := testkit.Do(context.Background(), "POST", h.URL+"/api/v1/devices", "", map[string]string{"id": "x", "site": "s1", "role": "kiosk"}, nil); code != 401 {
		t.Fatalf("token issue without auth: %d, want 401", code)
	}
}

// A site's downlink goes to its enrolled devices only, and access lists
// (with the key that inverts their card hashes) to its gateways only: a
// client that never enrolled gets nothing of the site, neither on all/down
// nor by saying hello under a new id; a kiosk's login sees notices but never
// an access list's body; the gateway gets its list and checks cards.
func TestSiteDownlinkOnlyToItsDevices(t *testing.T) {
	t.Parallel()
	mqttAddr := testkit.FreePort(t)
	h := startHub(t, filepath.Join(t.TempDir(), "hub"), mqttAddr, "")
	k := startEnrolledEdge(t, h, "kiosk-1", "s1", "kiosk")
	gw := startEnrolledEdge(t, h, "gw-1", "s1", "gateway", "--config", gatewayConfig(t, ""))

	// Never enrolled: reads what it may (its own ack and down) and tries
	// the site's all/down.
	anon, err := dial(t, h.MQTT, "snoop", "", "")
	if err != nil {
		t.Fatal(err)
	}
	leaked := make(chan string, 64)
	if tok := anon.Subscribe(wire.SiteDown("s1"), 1, func(_ mqtt.Client, m mqtt.Message) { leaked <- m.Topic() }); tok.WaitTimeout(5*time.Second) && tok.Error() == nil {
		if st, _ := tok.(*mqtt.SubscribeToken); st == nil || st.Result()[wire.SiteDown("s1")] != 0x80 {
			t.Errorf("an unenrolled client's subscription to all/down was granted")
		}
	}
	if tok := anon.Subscribe(wire.Topic("s1", "snoop", wire.LeafDown), 1, func(_ mqtt.Client, m mqtt.Message) { leaked <- m.Topic() }); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	anonAcks := make(chan wire.Ack, 16)
	if tok := anon.Subscribe(wire.Topic("s1", "snoop", wire.LeafAck), 1, func(_ mqtt.Client, m mqtt.Message) {
		if p, err := identity.Payload(m.Payload()); err == nil {
			if a, err := wire.DecodeAck(p); err == nil {
				anonAcks <- a
			}
		}
	}); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}

	// A kiosk's own login (enrolled, not running): what any kiosk of the
	// site receives.
	kioskData := enrollEdge(t, h, "kiosk-2", "s1", "kiosk")
	id2, _ := readIdentity(t, kioskData)
	key2, err := identity.LoadKey(filepath.Join(kioskData, "identity", "device.key"))
	if err != nil {
		t.Fatal(err)
	}
	spy, err := dial(t, h.MQTT, id2.ID, id2.MQTTUsername, id2.MQTTPassword)
	if err != nil {
		t.Fatal(err)
	}
	seen := make(chan wire.Down, 256)
	for _, topic := range []string{wire.SiteDown("s1"), wire.Topic("s1", id2.ID, wire.LeafDown)} {
		if tok := spy.Subscribe(topic, 1, func(_ mqtt.Client, m mqtt.Message) {
			p, err := identity.Payload(m.Payload())
			if err != nil {
				t.Errorf("downlink on %s not signed: %v", m.Topic(), err)
				return
			}
			d, err := wire.DecodeDown(p)
			if err != nil {
				t.Errorf("downlink on %s: %v", m.Topic(), err)
				return
			}
			seen <- d
		}); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
	}

	h.putAccessList(t, "s1", "B3", map[string][]string{"B3-main": {"26:123:45678"}})
	var n struct{ ID string }
	if code := h.do(t, "POST", "/api/v1/notices", map[string]string{"site": "s1", "title": "停水通知",
		"body": "周六9:00-12:00", "category": "announcement", "expires": time.Now().Add(48 * time.Hour).Format(time.RFC3339)}, &n); code != 201 {
		t.Fatalf("publish notice: %d", code)
	}
	poll.Eventually(t, 20*time.Second, func() (bool, string) {
		var list []kioskNotice
		k.do(t, "GET", "/api/v1/notices", nil, &list)
		return len(list) == 1 && list[0].ID == n.ID, fmt.Sprintf("kiosk notices %+v", list)
	})
	poll.Eventually(t, 20*time.Second, func() (bool, string) {
		l := gw.accessList(t)
		return l.Present && l.Doors["B3-main"] == 1, fmt.Sprintf("gateway list %+v", l)
	})
	if result, reason, _ := gw.decision(t, "R-main", "B3-main", "26:123:45678"); result != "granted" {
		t.Fatalf("listed card at the gateway: %s (%s), want granted", result, reason)
	}

	// Both ask for everything from the start: the hub answers the
	// unenrolled one's hello with an ack and nothing else.
	hello := func(c mqtt.Client, id string, sign bool) {
		p, err := wire.Encode(wire.Up{Hello: &wire.Hello{Role: "kiosk", Clock: 1 << 40}})
		if err != nil {
			t.Fatal(err)
		}
		if sign {
			if p, err = identity.Sign(key2, id, p); err != nil {
				t.Fatal(err)
			}
		}
		if tok := c.Publish(wire.Topic("s1", id, wire.LeafUp), 1, false, p); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
	}
	hello(anon, "snoop", false)
	hello(spy, id2.ID, true)
	select {
	case a := <-anonAcks:
		if a.DownHead != 0 {
			t.Errorf("the unenrolled client was told the site's downlink head %d", a.DownHead)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no answer to the unenrolled client's hello")
	}
	var caughtUp, withheld bool
	deadline := time.After(20 * time.Second)
	for !caughtUp || !withheld {
		select {
		case d := <-seen:
			for _, c := range d.Changes {
				switch {
				case c.Entity == wire.EntityAccessList && (len(c.Body) > 0 || !c.Withheld):
					t.Fatalf("a kiosk's login received access list %s whole (%d bytes of body)", c.ID, len(c.Body))
				case c.Entity == wire.EntityAccessList:
					withheld = true // live, on all/down, without its body
				case c.Entity == wire.EntityNotice && c.ID == n.ID && d.Prev == 0:
					caughtUp = true // the catch-up from the start: the list is not in it
				}
			}
		case <-deadline:
			t.Fatalf("the kiosk's login saw its catch-up: %v, the withheld list: %v", caughtUp, withheld)
		}
	}
	// The catch-up answering the kiosk's hello has come; anything for the
	// unenrolled client, whose hello went first, would have by now.
	select {
	case topic := <-leaked:
		t.Fatalf("the unenrolled client received a message on %s", topic)
	default:
	}
}

// An edge ignores acks that are not the hub's. Through a broker on which
// any client may publish anywhere (Mosquitto's open demo config), a client
// sends an enrolled kiosk forged acks far above its newest seq — unsigned,
// and signed by another key under the hub's id: the kiosk keeps syncing,
// every event reaches the hub, and the refusals are counted. (One such ack
// used to stop the kiosk's uplink until it was restarted.)
func TestForgedAcksChangeNothing(t *testing.T) {
	t.Parallel()
	url, _ := testkit.Mosquitto(t)
	h := startHub(t, filepath.Join(t.TempDir(), "hub"), "", url)
	k := startEnrolledEdge(t, h, "kiosk-1", "s1", "kiosk")
	posted := 0
	post := func(n int) {
		for range n {
			posted++
			if code := k.do(t, "POST", "/api/v1/checkins", map[string]string{"resident": fmt.Sprintf("R%d", posted), "activity": "A1"}, nil); code != 201 {
				t.Fatalf("check-in: %d", code)
			}
		}
	}
	post(5)
	drained(t, k, 20*time.Second)

	me, raw := readIdentity(t, k.Data)
	var id struct {
		HubID string `json:"hub_id"`
	}
	if err := json.Unmarshal(raw, &id); err != nil || id.HubID == "" {
		t.Fatalf("hub id in the kiosk's identity: %v", err)
	}
	other, err := identity.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	forged := func(sign bool) []byte {
		p, err := wire.Encode(wire.Ack{Acked: 1 << 40, Device: me.ID, Clock: 1 << 60})
		if err != nil {
			t.Fatal(err)
		}
		if sign {
			if p, err = identity.Sign(other, id.HubID, p); err != nil {
				t.Fatal(err)
			}
		}
		return p
	}
	attacker, err := dial(t, url, "attacker", "", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range [][]byte{forged(false), forged(true)} {
		if tok := attacker.Publish(wire.Topic("s1", "kiosk-1", wire.LeafAck), 1, false, p); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
	}
	poll.Eventually(t, 20*time.Second, func() (bool, string) {
		n := metric(t, k.URL, "linli_edge_acks_refused_total")
		return n == 2, fmt.Sprintf("%v acks refused, want 2", n)
	})
	post(5)
	drained(t, k, 20*time.Second)
	evs, err := testkit.FetchEvents(context.Background(), h.URL, h.token(t), "kiosk-1")
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != posted {
		t.Fatalf("hub has %d events of kiosk-1, want %d", len(evs), posted)
	}
}
