package faults

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"linli/shared/test/faults/faultrun"
	"linli/shared/test/poll"
	"linli/shared/test/testkit"
)

// Scenario 1: the edge binary under concurrent HTTP load is SIGKILLed at
// random 50–400 ms intervals and restarted. Badger must open every time
// without repair, every 201 must reach the hub exactly once, and the
// device's seqs must have no gaps (check-ins are never dropped).
func TestEdgeKillLoop(t *testing.T) {
	t.Parallel()
	kills := faultrun.Scale(30, 300)
	r := newRand(t)
	h := embeddedHub(t)
	e := testkit.StartEdge(t, testkit.EdgeConfig{ID: "kiosk-kill", Broker: h.MQTT})
	ledger := testkit.NewLedger()
	load := testkit.StartLoad(e, ledger, testkit.LoadConfig{Workers: 8})
	start := time.Now()
	var slowestOpen time.Duration
	for i := range kills {
		time.Sleep(between(r, 50*time.Millisecond, 400*time.Millisecond))
		if e.Exited() {
			t.Fatalf("edge exited by itself before kill %d", i+1)
		}
		e.Kill()
		t0 := time.Now()
		e.Restart()
		e.WaitUp(t) // Badger opened the crashed store: no repair step exists
		slowestOpen = max(slowestOpen, time.Since(t0))
	}
	load.Stop()
	e.Drained(t, 3*time.Minute)
	v := testkit.Verify(t, h, e, ledger)
	if v.Gaps != 0 || v.Present != v.Acked {
		t.Fatalf("after %d kills: %s; want no gaps", kills, v)
	}
	if strings.Contains(e.Log(), "panic:") {
		t.Fatal("the edge panicked (see its log)")
	}
	faultrun.Result(t, "edge kill -9 loop", "%d kills survived in %v, %d writes acked (%d failed while down), slowest restart to healthy %v; %s",
		kills, time.Since(start).Round(time.Second), v.Acked, load.Failed(), slowestOpen.Round(time.Millisecond), v)
}

// Scenario 8: the hub is SIGKILLed again and again while an edge drains a
// backlog into it and keeps writing, at random moments, so some kills land
// between the hub's commit and its ack. Nothing may be lost or duplicated.
func TestHubKillLoopDuringDrain(t *testing.T) {
	t.Parallel()
	hubStores(t, hubKillLoopDuringDrain)
}

func hubKillLoopDuringDrain(t *testing.T, hubArgs []string) {
	kills := faultrun.Scale(12, 60)
	backlog := faultrun.Scale(20_000, 100_000)
	r := newRand(t)
	mqttAddr := testkit.StablePort(t)
	e := testkit.StartEdge(t, testkit.EdgeConfig{ID: "kiosk-hubkill", Broker: "tcp://" + mqttAddr,
		Args: []string{"--batch-events", "200", "--window", "4"}})
	ledger := testkit.NewLedger()
	if ok := testkit.RunLoadgen(t, e, ledger, "checkin", "B", int64(backlog), 16); ok != int64(backlog) {
		t.Fatalf("%d of %d backlog writes acked", ok, backlog)
	}
	h := testkit.StartHub(t, testkit.HubConfig{Data: filepath.Join(t.TempDir(), "hub"), MQTTAddr: mqttAddr, Args: hubArgs})
	load := testkit.StartLoad(e, ledger, testkit.LoadConfig{Workers: 2, Pause: 5 * time.Millisecond})
	midDrain := 0
	for range kills {
		time.Sleep(between(r, 100*time.Millisecond, 1500*time.Millisecond))
		if s, err := e.Sync(context.Background()); err == nil && s.AckedSeq < s.LastSeq && s.AckedSeq > 0 {
			midDrain++
		}
		h.Kill()
		h.Restart()
		h.WaitUp(t)
	}
	load.Stop()
	e.Drained(t, 3*time.Minute)
	v := testkit.Verify(t, h, e, ledger)
	if v.Present != v.Acked || v.Gaps != 0 {
		t.Fatalf("%s", v)
	}
	faultrun.Result(t, "hub kill -9 loop during drain", "%d hub kills (%d with the edge mid-drain), %d events checked; %s",
		kills, midDrain, v.Acked, v)
}

// Scenario 7a: the hub with its embedded broker is SIGKILLed mid-stream
// and restarted, a few times, while the edge keeps writing.
func TestEmbeddedBrokerKilledMidStream(t *testing.T) {
	t.Parallel()
	hubStores(t, embeddedBrokerKilledMidStream)
}

func embeddedBrokerKilledMidStream(t *testing.T, hubArgs []string) {
	kills := faultrun.Scale(3, 10)
	r := newRand(t)
	h := embeddedHub(t, hubArgs...)
	e := testkit.StartEdge(t, testkit.EdgeConfig{ID: "kiosk-embk", Broker: h.MQTT})
	ledger := testkit.NewLedger()
	load := testkit.StartLoad(e, ledger, testkit.LoadConfig{Workers: 4})
	for range kills {
		waitAckProgress(t, e, 60*time.Second)
		time.Sleep(between(r, 200*time.Millisecond, time.Second))
		h.Kill()
		time.Sleep(between(r, 0, time.Second))
		h.Restart()
		h.WaitUp(t)
	}
	load.Stop()
	e.Drained(t, 2*time.Minute)
	v := testkit.Verify(t, h, e, ledger)
	faultrun.Result(t, "embedded broker (hub) kill -9 mid-stream", "%d kills; %s", kills, v)
}

// Scenario 7b: Mosquitto between edge and hub is SIGKILLed mid-stream and
// restarted on the same port; its on-disk persistence is a periodic
// snapshot, so queued messages die with it and the edge must resend.
func TestMosquittoKilledMidStream(t *testing.T) {
	t.Parallel()
	hubStores(t, mosquittoKilledMidStream)
}

func mosquittoKilledMidStream(t *testing.T, hubArgs []string) {
	kills := faultrun.Scale(3, 10)
	r := newRand(t)
	url, mosq := testkit.Mosquitto(t)
	h := testkit.StartHub(t, testkit.HubConfig{Data: filepath.Join(t.TempDir(), "hub"), Broker: url, Args: hubArgs})
	e := testkit.StartEdge(t, testkit.EdgeConfig{ID: "kiosk-mosqk", Broker: url})
	ledger := testkit.NewLedger()
	load := testkit.StartLoad(e, ledger, testkit.LoadConfig{Workers: 4})
	for range kills {
		waitAckProgress(t, e, 60*time.Second)
		time.Sleep(between(r, 200*time.Millisecond, time.Second))
		mosq.Kill()
		time.Sleep(between(r, 0, time.Second))
		mosq.Restart()
	}
	load.Stop()
	e.Drained(t, 2*time.Minute)
	v := testkit.Verify(t, h, e, ledger)
	faultrun.Result(t, "Mosquitto kill -9 mid-stream", "%d kills; %s", kills, v)
}

// waitAckProgress waits until the edge's acked seq moves.
func waitAckProgress(t *testing.T, e *testkit.Edge, timeout time.Duration) {
	t.Helper()
	s0, _ := e.Sync(context.Background())
	poll.Eventually(t, timeout, func() (bool, string) {
		s, err := e.Sync(context.Background())
		return err == nil && s.AckedSeq > s0.AckedSeq, fmt.Sprintf("acked did not move from %d: %+v %v", s0.AckedSeq, s, err)
	})
}
