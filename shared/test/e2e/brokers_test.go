package e2e

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"linli/shared/test/netproxy"
	"linli/shared/test/testkit"
)

// An edge given a broker list whose first broker is down (nothing listens
// on its port) syncs through the next one, enrolled (signed, with its
// broker login) or not: every answered write reaches the hub exactly once.
func TestEdgeBrokerListSkipsADeadBroker(t *testing.T) {
	t.Parallel()
	for _, enrolled := range []bool{false, true} {
		t.Run(map[bool]string{false: "unenrolled", true: "enrolled"}[enrolled], func(t *testing.T) {
			t.Parallel()
			mqttAddr := testkit.FreePort(t)
			h := startHub(t, filepath.Join(t.TempDir(), "hub"), mqttAddr, "")
			brokers := "tcp://" + testkit.FreePort(t) + "," + h.MQTT
			var e *edgeProc
			if enrolled {
				e = startEnrolledEdge(t, h, "kiosk-1", "s1", "kiosk", "--broker", brokers)
			} else {
				e = startEdge(t, "kiosk-1", "s1", "kiosk", brokers)
			}
			ledger := testkit.NewLedger()
			loadMarked(t, e, ledger, "A", 500)
			drained(t, e, 60*time.Second)
			if v := verify(t, h, e, ledger); v.Present != 500 || v.HubCount != 500 {
				t.Fatalf("%s", v)
			}
		})
	}
}

// An edge syncing through the first broker of its list (a proxy in front
// of the hub's broker) moves to the second (the hub's broker itself) when
// the first goes away, whether the proxy is closed (connections reset,
// new ones refused) or black-holed (connections hang, as in a network
// partition); every write answered before, during and after reaches the
// hub exactly once.
func TestEdgeFailsOverToTheNextBroker(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		cut  func(p *netproxy.Proxy)
	}{
		{"closed", func(p *netproxy.Proxy) { _ = p.Close() }},
		{"black-holed", func(p *netproxy.Proxy) { p.Cut(netproxy.Blackhole) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			mqttAddr := testkit.FreePort(t)
			h := startHub(t, filepath.Join(t.TempDir(), "hub"), mqttAddr, "")
			p, err := netproxy.Start(mqttAddr)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = p.Close() })
			e := startEdge(t, "kiosk-1", "s1", "kiosk", "tcp://"+p.Addr()+","+h.MQTT, "--batch-events", "50", "--window", "2")
			ledger := testkit.NewLedger()
			loadMarked(t, e, ledger, "A", 300)
			drained(t, e, 60*time.Second)
			before := p.Stats()
			if before.Accepted == 0 || before.Bytes == 0 {
				t.Fatalf("proxy %+v: the edge did not sync through the first broker", before)
			}

			// The first broker goes away while writes go on: once the hub
			// has acked part of the second load, with more in flight.
			var loaded atomic.Bool
			cut := make(chan uint64, 1)
			go func() {
				tick := time.NewTicker(5 * time.Millisecond)
				defer tick.Stop()
				deadline := time.Now().Add(30 * time.Second)
				for range tick.C {
					var s syncState
					if code, err := testkit.Do(context.Background(), "GET", e.URL+"/api/v1/sync", "", nil, &s); err == nil && code == 200 && s.AckedSeq > 400 {
						tt.cut(p)
						cut <- s.LastSeq
						return
					}
					if loaded.Load() || time.Now().After(deadline) {
						cut <- 0
						return
					}
				}
			}()
			loadMarked(t, e, ledger, "B", 1000)
			loaded.Store(true)
			at := <-cut
			if at == 0 || at >= 1300 {
				t.Fatalf("the cut came at seq %d, want while the load was under way", at)
			}
			drained(t, e, 60*time.Second)
			if s := e.sync(t); !s.Connected || s.AckedSeq != 1300 {
				t.Fatalf("sync %+v after the cut, want connected with 1300 acked", s)
			}
			if v := verify(t, h, e, ledger); v.Present != 1300 || v.HubCount != 1300 {
				t.Fatalf("%s", v)
			}
		})
	}
}
