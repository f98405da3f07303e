package e2e

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"linli/shared/accesslist"
	"linli/shared/event"
	"linli/shared/hlc"
	"linli/shared/identity"
	"linli/shared/test/poll"
	"linli/shared/test/testkit"
	"linli/shared/wire"
)

// gatewayScenario is the simulated hardware of the test gateways: two
// doors with readers and strikes, a smoke detector, a leak sensor and an
// SHT3x. No steps: the tests drive it through the gateway's sim routes.
const gatewayScenario = `
speed: 1
doors:
  - {name: main, pin: main-contact}
  - {name: back, pin: back-contact}
readers:
  - {name: R-main, d0: main-d0, d1: main-d1}
  - {name: R-back, d0: back-d0, d1: back-d1}
contacts:
  - {name: smoke, pin: smoke-pin}
  - {name: water, pin: water-pin}
outputs: [main-strike, back-strike]
sht3x:
  - {name: env, bus: i2c-1, temperature: 22.5, humidity: 45}
`

// gatewayConfig is the gateway's config file: building B3 with B3-main
// (fallback locked, an escape route) and B3-back (fallback last).
func gatewayConfig(t *testing.T, extra string) string {
	t.Helper()
	dir := t.TempDir()
	scenario := filepath.Join(dir, "scenario.yaml")
	if err := os.WriteFile(scenario, []byte(gatewayScenario), 0o600); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`building: B3
hardware: sim
sim-scenario: %s
forced-grace: 300ms
sample-interval: 500ms
%s
doors:
  - {name: B3-main, contact: main-contact, strike: main-strike, reader: R-main, unlock: 3s, fallback: locked, escape: true}
  - {name: B3-back, contact: back-contact, strike: back-strike, reader: R-back, unlock: 3s, fallback: last}
readers:
  - {name: R-main, d0: main-d0, d1: main-d1}
  - {name: R-back, d0: back-d0, d1: back-d1}
sensors:
  - {name: B3-smoke-1, kind: smoke, pin: smoke-pin}
  - {name: B3-water-1, kind: water, pin: water-pin}
  - {name: B3-env-1, kind: sht3x, bus: i2c-1}
`, scenario, extra)
	path := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

type gwDoor struct {
	Door     string `json:"door"`
	Open     bool   `json:"open"`
	Relay    bool   `json:"relay"`
	Released bool   `json:"released"`
	Last     *struct {
		N          uint64 `json:"n"`
		Result     string `json:"result"`
		Credential string `json:"credential"`
		Reason     string `json:"reason"`
	} `json:"last"`
}

type gwList struct {
	Present bool           `json:"present"`
	Issued  time.Time      `json:"issued"`
	Stale   bool           `json:"stale"`
	Doors   map[string]int `json:"doors"`
}

func (e *edgeProc) doors(t *testing.T) map[string]gwDoor {
	t.Helper()
	var ds []gwDoor
	if code := e.do(t, "GET", "/api/v1/doors", nil, &ds); code != 200 {
		t.Fatalf("GET doors on %s: %d", e.ID, code)
	}
	out := map[string]gwDoor{}
	for _, d := range ds {
		out[d.Door] = d
	}
	return out
}

func (e *edgeProc) accessList(t *testing.T) gwList {
	t.Helper()
	var l gwList
	if code := e.do(t, "GET", "/api/v1/access-list", nil, &l); code != 200 {
		t.Fatalf("GET access-list on %s: %d", e.ID, code)
	}
	return l
}

// sim drives the gateway's simulated hardware.
func (e *edgeProc) sim(t *testing.T, what string, body map[string]string) {
	t.Helper()
	if code := e.do(t, "POST", "/api/v1/sim/"+what, body, nil); code != 204 {
		t.Fatalf("sim %s %v on %s: %d", what, body, e.ID, code)
	}
}

// door opens or closes a door and waits until the gateway has seen it
// (after the contact's debounce).
func (e *edgeProc) door(t *testing.T, door string, open bool) {
	t.Helper()
	state := "closed"
	if open {
		state = "open"
	}
	e.sim(t, "door", map[string]string{"door": door, "state": state})
	poll.Eventually(t, 10*time.Second, func() (bool, string) {
		return e.doors(t)[door].Open == open, fmt.Sprintf("door %s not seen %s", door, state)
	})
}

// decision swipes card at reader and returns the door's decision.
func (e *edgeProc) decision(t *testing.T, reader, door, card string) (result, reason, credential string) {
	t.Helper()
	var before uint64
	if l := e.doors(t)[door].Last; l != nil {
		before = l.N
	}
	e.sim(t, "swipe", map[string]string{"reader": reader, "card": card})
	var d gwDoor
	poll.Eventually(t, 10*time.Second, func() (bool, string) {
		d = e.doors(t)[door]
		return d.Last != nil && d.Last.N > before, fmt.Sprintf("no new decision at %s: %+v", door, d.Last)
	})
	return d.Last.Result, d.Last.Reason, d.Last.Credential
}

func (h *hubProc) putAccessList(t *testing.T, site, building string, doors map[string][]string) {
	t.Helper()
	if code := h.do(t, "PUT", "/api/v1/access-lists/"+site+"/"+building, map[string]any{"doors": doors}, nil); code != 200 {
		t.Fatalf("PUT access list: %d", code)
	}
}

type hubAlarm struct {
	ID       string `json:"id"`
	Source   string `json:"source"`
	Kind     string `json:"kind"`
	Active   bool   `json:"active"`
	Building string `json:"building"`
	Place    string `json:"place"`
}

func (h *hubProc) alarms(ctx context.Context) ([]hubAlarm, error) {
	var as []hubAlarm
	code, err := testkit.Do(ctx, "GET", h.URL+"/api/v1/alarms", "", nil, &as)
	if err == nil && code != 200 {
		err = fmt.Errorf("GET alarms: %d", code)
	}
	return as, err
}

func hasAlarm(as []hubAlarm, source, kind string) bool {
	_, ok := findAlarm(as, source, kind)
	return ok
}

// findAlarm finds the alarm of source and kind whose source is active.
func findAlarm(as []hubAlarm, source, kind string) (hubAlarm, bool) {
	for _, a := range as {
		if a.Source == source && a.Kind == kind && a.Active {
			return a, true
		}
	}
	return hubAlarm{}, false
}

// A resident's card is decided at the door with the hub (and its broker)
// down, at once, from the list the hub sent earlier; the decisions reach
// the hub once it is back, naming the card only by its pseudonym.
func TestGatewaySwipeOfflineReachesHubLater(t *testing.T) {
	t.Parallel()
	mqttAddr := testkit.FreePort(t)
	h := startHub(t, filepath.Join(t.TempDir(), "hub"), mqttAddr, "")
	gw := startEnrolledEdge(t, h, "gw-1", "s1", "gateway", "--config", gatewayConfig(t, ""))
	h.putAccessList(t, "s1", "B3", map[string][]string{"B3-main": {"26:123:45678"}, "B3-back": {"26:123:45678"}})
	poll.Eventually(t, 20*time.Second, func() (bool, string) {
		l := gw.accessList(t)
		return l.Present && l.Doors["B3-main"] == 1, fmt.Sprintf("gateway list %+v", l)
	})
	drained(t, gw, 20*time.Second)
	acked := gw.sync(t).AckedSeq

	h.Kill()
	poll.Eventually(t, 20*time.Second, func() (bool, string) { return !gw.sync(t).Connected, "gateway still connected" })
	start := time.Now()
	result, reason, cred := gw.decision(t, "R-main", "B3-main", "26:123:45678")
	took := time.Since(start)
	if result != "granted" || reason != "" || !strings.HasPrefix(cred, accesslist.PseudonymPrefix) {
		t.Fatalf("listed card offline: %s (%s) as %q, want granted under a pseudonym", result, reason, cred)
	}
	t.Logf("decided offline in %v (swipe on the wire included)", took.Round(time.Millisecond))
	if !gw.doors(t)["B3-main"].Relay {
		t.Fatal("strike not released after a granted card")
	}
	gw.door(t, "B3-main", true)
	gw.door(t, "B3-main", false)
	if result, reason, _ := gw.decision(t, "R-main", "B3-main", "26:99:1"); result != "denied" || reason != "not_listed" {
		t.Fatalf("unknown card offline: %s (%s), want denied not_listed", result, reason)
	}
	poll.Eventually(t, 10*time.Second, func() (bool, string) {
		s := gw.sync(t)
		return s.LastSeq >= acked+4, fmt.Sprintf("gateway sync %+v, want 4 new events", s)
	})
	if s := gw.sync(t); s.Pending == 0 {
		t.Fatalf("nothing pending with the hub down: %+v", s)
	}

	h.Restart()
	testkit.WaitHTTP(t, h.URL+"/healthz", 20*time.Second)
	drained(t, gw, 30*time.Second)
	evs, err := testkit.FetchEvents(context.Background(), h.URL, h.token(t), "gw-1")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ev := range evs {
		if ev.Kind != "access" {
			continue
		}
		b, _ := json.Marshal(ev.Body)
		if strings.Contains(string(b), "45678") || strings.Contains(string(b), "26:99:1") {
			t.Fatalf("a card in clear at the hub: %s", b)
		}
		got = append(got, fmt.Sprintf("%v %v", ev.Body["result"], ev.Body["credential"]))
	}
	want := []string{"granted " + cred, "open <nil>", "close <nil>"}
	if len(got) != 4 || strings.Join(got[:3], "; ") != strings.Join(want, "; ") || !strings.HasPrefix(got[3], "denied h:") {
		t.Fatalf("access events at the hub %q, want %q then a denied pseudonym", got, want)
	}
}

// With 30,000 readings queued while the hub is down, a wired smoke
// detector's alarm and a smoke reading posted over HTTP (a sensor bridge)
// are both at the hub before the backlog has drained; either releases the
// escape door at once, offline too. The hub refuses to clear an alarm
// while its source reports smoke; once both sources clear, the door locks
// again and the operator's clear closes the alarm.
func TestGatewaySmokeAlarmAheadOfBacklog(t *testing.T) {
	t.Parallel()
	mqttAddr := testkit.FreePort(t)
	h := startHub(t, filepath.Join(t.TempDir(), "hub"), mqttAddr, "")
	gw := startEnrolledEdge(t, h, "gw-2", "s1", "gateway", "--config", gatewayConfig(t, "places:\n  B3-smoke-9: 3号楼 1单元 楼道烟感"))
	poll.Eventually(t, 20*time.Second, func() (bool, string) { return gw.sync(t).Connected, "gateway not connected" })
	h.Kill()
	poll.Eventually(t, 20*time.Second, func() (bool, string) { return !gw.sync(t).Connected, "gateway still connected" })

	const backlog, workers = 30000, 16
	var next, failed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1); i <= backlog; i = next.Add(1) {
				code, err := testkit.Do(context.Background(), "POST", gw.URL+"/api/v1/readings", "",
					map[string]any{"sensor": "B3-t-9", "kind": "temperature", "value": 20 + float64(i%100)/10}, nil)
				if err != nil || code != 201 {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d readings refused", failed.Load())
	}
	t.Logf("queued %d readings in %v", backlog, time.Since(start).Round(time.Millisecond))

	reading := func(v int) {
		t.Helper()
		if code := gw.do(t, "POST", "/api/v1/readings", map[string]any{"sensor": "B3-smoke-9", "kind": "smoke", "value": v}, nil); code != 201 {
			t.Fatalf("smoke reading %d: %d", v, code)
		}
	}
	reading(1)
	// The HTTP reading alone releases the escape door.
	if d := gw.doors(t)["B3-main"]; !d.Relay || !d.Released {
		t.Fatalf("escape door after an HTTP smoke reading: %+v", d)
	}
	gw.sim(t, "contact", map[string]string{"sensor": "B3-smoke-1", "state": "alarm"})
	poll.Eventually(t, 10*time.Second, func() (bool, string) {
		d := gw.doors(t)["B3-main"]
		return d.Relay && d.Released, fmt.Sprintf("escape door offline during the alarm: %+v", d)
	})
	if d := gw.doors(t)["B3-back"]; d.Relay || d.Released {
		t.Fatalf("a door that is no escape route was released: %+v", d)
	}
	total := gw.sync(t).LastSeq

	h.Restart()
	testkit.WaitHTTP(t, h.URL+"/healthz", 20*time.Second)
	// Poll as fast as the hub answers: the first moment both alarms show,
	// how much of the backlog has arrived?
	deadline := time.Now().Add(30 * time.Second)
	var received uint64
	var as []hubAlarm
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var err error
		as, err = h.alarms(ctx)
		if err == nil && hasAlarm(as, "B3-smoke-1", "smoke") && hasAlarm(as, "B3-smoke-9", "smoke") {
			var ds []struct {
				ID       string `json:"id"`
				Received uint64 `json:"received"`
			}
			code, derr := testkit.Do(ctx, "GET", h.URL+"/api/v1/devices", h.token(t), nil, &ds)
			cancel()
			if derr != nil || code != 200 {
				t.Fatalf("GET devices: %d %v", code, derr)
			}
			for _, d := range ds {
				if d.ID == "gw-2" {
					received = d.Received
				}
			}
			break
		}
		cancel()
		if time.Now().After(deadline) {
			t.Fatalf("both smoke alarms not at the hub within 30s (alarms %+v, last error %v)", as, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("alarms at the hub when %d of %d events had arrived", received, total)
	if received >= total {
		t.Fatalf("the alarms arrived only with the backlog (%d of %d events in)", received, total)
	}
	bridge, _ := findAlarm(as, "B3-smoke-9", "smoke")
	if bridge.Building != "B3" || bridge.Place != "3号楼 1单元 楼道烟感" {
		t.Fatalf("HTTP smoke alarm at the hub %+v, want building B3 and its place", bridge)
	}
	if code := h.do(t, "POST", "/api/v1/alarms/"+bridge.ID+"/clear", nil, nil); code != 409 {
		t.Fatalf("clear while the source reports smoke: %d, want 409", code)
	}
	drained(t, gw, 60*time.Second)

	reading(0)
	if d := gw.doors(t)["B3-main"]; !d.Relay || !d.Released {
		t.Fatalf("escape door locked while the wired detector still reports smoke: %+v", d)
	}
	gw.sim(t, "contact", map[string]string{"sensor": "B3-smoke-1", "state": "clear"})
	poll.Eventually(t, 20*time.Second, func() (bool, string) {
		as, err := h.alarms(context.Background())
		return err == nil && !hasAlarm(as, "B3-smoke-1", "smoke") && !hasAlarm(as, "B3-smoke-9", "smoke"), fmt.Sprintf("alarms %+v %v", as, err)
	})
	if d := gw.doors(t)["B3-main"]; d.Relay || d.Released {
		t.Fatalf("escape door after the alarm cleared: %+v", d)
	}
	if code := h.do(t, "POST", "/api/v1/alarms/"+bridge.ID+"/clear", nil, nil); code != 200 {
		t.Fatalf("clear once the source cleared: %d, want 200", code)
	}
	as, err := h.alarms(context.Background())
	if err != nil || slices.ContainsFunc(as, func(a hubAlarm) bool { return a.ID == bridge.ID }) {
		t.Fatalf("alarms after the operator's clear %+v %v", as, err)
	}
}

// An access list goes stale when the hub is gone longer than
// access-max-age: the locked door refuses everyone, the last-list door
// still lets listed residents in, and both are fresh again once the hub is
// back. A list forged on the broker (unsigned, or signed by another key) is
// refused, while the same message signed with the hub's key — the control
// that the path to the gateway works — is taken.
func TestGatewayStaleAndForgedAccessList(t *testing.T) {
	t.Parallel()
	broker, _ := testkit.Mosquitto(t) // anonymous: anyone may publish, as an attacker on the broker could
	hubData := filepath.Join(t.TempDir(), "hub")
	h := startHub(t, hubData, "", broker)
	gw := startEnrolledEdge(t, h, "gw-3", "s1", "gateway", "--config", gatewayConfig(t, "access-max-age: 3s"))
	h.putAccessList(t, "s1", "B3", map[string][]string{"B3-main": {"26:123:45678"}, "B3-back": {"26:123:45678"}})
	poll.Eventually(t, 20*time.Second, func() (bool, string) {
		l := gw.accessList(t)
		return l.Present && !l.Stale, fmt.Sprintf("gateway list %+v", l)
	})

	t.Run("stale list: each door follows its fallback", func(t *testing.T) {
		if err := h.Stop(); err != nil {
			t.Fatal(err)
		}
		// The gateway still has its broker, but nothing it records is
		// acked any more: the list is no longer confirmed.
		gw.door(t, "B3-back", true)
		gw.door(t, "B3-back", false)
		poll.Eventually(t, 30*time.Second, func() (bool, string) {
			l := gw.accessList(t)
			return l.Stale, fmt.Sprintf("list %+v", l)
		})
		if result, reason, _ := gw.decision(t, "R-main", "B3-main", "26:123:45678"); result != "denied" || reason != "stale_list" {
			t.Fatalf("locked door on a stale list: %s (%s), want denied stale_list", result, reason)
		}
		if result, reason, _ := gw.decision(t, "R-back", "B3-back", "26:123:45678"); result != "granted" || reason != "stale_list" {
			t.Fatalf("last-list door on a stale list: %s (%s), want granted stale_list", result, reason)
		}
		if result, _, _ := gw.decision(t, "R-back", "B3-back", "26:99:1"); result != "denied" {
			t.Fatalf("unknown card at the last-list door: %s", result)
		}
		h.Restart()
		testkit.WaitHTTP(t, h.URL+"/healthz", 20*time.Second)
		poll.Eventually(t, 30*time.Second, func() (bool, string) {
			l := gw.accessList(t)
			return !l.Stale, fmt.Sprintf("list still stale with the hub back: %+v", l)
		})
		if result, reason, _ := gw.decision(t, "R-main", "B3-main", "26:123:45678"); result != "granted" || reason != "" {
			t.Fatalf("locked door once fresh again: %s (%s), want granted", result, reason)
		}
	})

	t.Run("forged lists are refused", func(t *testing.T) {
		before := gw.accessList(t)
		attacker := make([]byte, accesslist.KeySize)
		forged := accesslist.List{Site: "s1", Building: "B3", Issued: hlc.FromTime(time.Now().Add(time.Hour)), Key: attacker,
			Doors: []accesslist.Door{{Name: "B3-main", Cards: [][]byte{accesslist.Hash(attacker, "26:66:666")}}}}
		body, err := event.Marshal(forged)
		if err != nil {
			t.Fatal(err)
		}
		down, err := wire.Encode(wire.Down{Site: "s1", Prev: 0, Last: 1 << 40,
			Changes: []wire.Change{{Seq: 1 << 40, Entity: wire.EntityAccessList, ID: accesslist.ID("s1", "B3"), HLC: forged.Issued, Body: body}}})
		if err != nil {
			t.Fatal(err)
		}
		other, err := identity.NewKey()
		if err != nil {
			t.Fatal(err)
		}
		hubID := "hub-" + filepath.Base(hubData) // startHub's id on an external broker
		byOther, err := identity.Sign(other, hubID, down)
		if err != nil {
			t.Fatal(err)
		}
		c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(broker).SetClientID("attacker").SetConnectTimeout(5 * time.Second))
		if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("connect to the broker: %v", tok.Error())
		}
		defer c.Disconnect(50)
		publish := func(p []byte) {
			t.Helper()
			if tok := c.Publish(wire.SiteDown("s1"), 1, false, p); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				t.Fatalf("publish: %v", tok.Error())
			}
		}
		for _, p := range [][]byte{down, byOther} {
			publish(p)
			if result, reason, _ := gw.decision(t, "R-main", "B3-main", "26:66:666"); result != "denied" || reason != "not_listed" {
				t.Fatalf("card of a forged list: %s (%s), want denied not_listed", result, reason)
			}
		}
		if l := gw.accessList(t); !l.Issued.Equal(before.Issued) {
			t.Fatalf("list in force changed from %v to %v", before.Issued, l.Issued)
		}
		// The control: the same message signed with the hub's own key.
		key, err := identity.LoadKey(filepath.Join(hubData, "hub.key"))
		if err != nil {
			t.Fatal(err)
		}
		bySigner, err := identity.Sign(ed25519.PrivateKey(key), hubID, down)
		if err != nil {
			t.Fatal(err)
		}
		publish(bySigner)
		poll.Eventually(t, 10*time.Second, func() (bool, string) {
			l := gw.accessList(t)
			return l.Issued.Equal(forged.Issued.Time()), fmt.Sprintf("the hub-signed list was not taken: %+v", l)
		})
		if result, _, _ := gw.decision(t, "R-main", "B3-main", "26:66:666"); result != "granted" {
			t.Fatalf("card of the hub-signed list: %s, want granted", result)
		}
	})
}

// A card posted to the gateway's access API travels like a card read at
// its door: only as the site's keyed pseudonym, the same one for the same
// card, in the gateway's answer, over MQTT and at the hub. Before the
// gateway has a list (and so the key) a card in clear is refused.
func TestGatewayPostedCardReachesHubOnlyAsPseudonym(t *testing.T) {
	t.Parallel()
	mqttAddr := testkit.FreePort(t)
	h := startHub(t, filepath.Join(t.TempDir(), "hub"), mqttAddr, "")
	gw := startEnrolledEdge(t, h, "gw-4", "s1", "gateway", "--config", gatewayConfig(t, ""))
	post := func(credential, result string) (int, map[string]any) {
		t.Helper()
		var out map[string]any
		code := gw.do(t, "POST", "/api/v1/access", map[string]string{"door": "B3-main", "credential": credential, "result": result}, &out)
		return code, out
	}
	if code, out := post("26:123:45678", "granted"); code != 201 || out["credential"] != nil {
		t.Fatalf("a card in clear before any list: %d %v, want 201 kept without the card", code, out)
	}

	h.putAccessList(t, "s1", "B3", map[string][]string{"B3-main": {"26:123:45678"}})
	poll.Eventually(t, 20*time.Second, func() (bool, string) {
		l := gw.accessList(t)
		return l.Present && l.Doors["B3-main"] == 1, fmt.Sprintf("gateway list %+v", l)
	})
	result, _, reader := gw.decision(t, "R-main", "B3-main", "26:123:45678")
	if result != "granted" || !strings.HasPrefix(reader, accesslist.PseudonymPrefix) {
		t.Fatalf("listed card at the reader: %s as %q", result, reader)
	}
	code, out := post("26:0123:45678", "granted")
	if code != 201 || out["credential"] != reader {
		t.Fatalf("the same card posted: %d %v, want 201 under the reader's %s", code, out, reader)
	}
	code, out = post("C42", "denied")
	c42, _ := out["credential"].(string)
	if code != 201 || !strings.HasPrefix(c42, accesslist.PseudonymPrefix) || c42 == reader {
		t.Fatalf("C42 posted: %d %v, want 201 under its own pseudonym", code, out)
	}
	if code, out := post(reader, "granted"); code != 201 || out["credential"] != reader {
		t.Fatalf("a pseudonym posted: %d %v, want it kept", code, out)
	}

	drained(t, gw, 30*time.Second)
	evs, err := testkit.FetchEvents(context.Background(), h.URL, h.token(t), "gw-4")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ev := range evs {
		if ev.Kind != "access" {
			continue
		}
		b, _ := json.Marshal(ev.Body)
		if strings.Contains(string(b), "45678") || strings.Contains(string(b), "C42") {
			t.Fatalf("a card in clear at the hub: %s", b)
		}
		got = append(got, fmt.Sprintf("%v %v", ev.Body["result"], ev.Body["credential"]))
	}
	want := []string{"granted <nil>", "granted " + reader, "granted " + reader, "denied " + c42, "granted " + reader} // the first before any list: no card
	if strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Fatalf("access events at the hub %q, want %q", got, want)
	}
}
