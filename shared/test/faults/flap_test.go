package faults

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"linli/shared/test/faults/faultrun"
	"linli/shared/test/netproxy"
	"linli/shared/test/poll"
	"linli/shared/test/testkit"
)

// Scenario 6: the link between the edge and the broker is cut and restored
// again and again while the edge streams: every cut either resets the
// connections or black-holes them (bytes held, new connections hanging),
// for 0.2–2.5 s, sometimes longer than two keepalives. Nothing may be lost or
// duplicated, nothing may deadlock, and acks must move again within three
// keepalives of every restore.
func TestFlappingNetwork(t *testing.T) {
	t.Parallel()
	flaps := faultrun.Scale(20, 60)
	// A one-second keepalive: a black hole longer than about two seconds
	// is noticed by the pings, shorter ones by the resend after restore.
	const keepalive = time.Second
	r := newRand(t)
	h := embeddedHub(t)
	px, err := netproxy.Start(strings.TrimPrefix(h.MQTT, "tcp://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { px.Close() })
	e := testkit.StartEdge(t, testkit.EdgeConfig{ID: "kiosk-flap", Broker: "tcp://" + px.Addr(),
		Args: []string{"--keepalive", keepalive.String(), "--backoff-max", "500ms", "--ack-timeout", "2s"}})
	ledger := testkit.NewLedger()
	load := testkit.StartLoad(e, ledger, testkit.LoadConfig{Workers: 2, Pause: 2 * time.Millisecond})
	waitAckProgress(t, e, 60*time.Second)
	var resumes []time.Duration
	var slow []string
	for i := range flaps {
		mode := netproxy.Reset
		if i%2 == 1 {
			mode = netproxy.Blackhole
		}
		px.Cut(mode)
		down := between(r, 200*time.Millisecond, 2500*time.Millisecond)
		time.Sleep(down)
		s0, err := e.Sync(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		px.Restore()
		restored := time.Now()
		var took time.Duration
		poll.Eventually(t, 60*time.Second, func() (bool, string) {
			s, err := e.Sync(context.Background())
			if err == nil && s.AckedSeq > s0.AckedSeq {
				took = time.Since(restored)
				return true, ""
			}
			return false, "no ack after the link came back (deadlock?)"
		})
		resumes = append(resumes, took)
		if took > 3*keepalive {
			slow = append(slow, mode.String()+" "+down.Round(time.Millisecond).String()+": "+took.Round(time.Millisecond).String())
		}
		time.Sleep(between(r, 50*time.Millisecond, 400*time.Millisecond))
	}
	load.Stop()
	e.Drained(t, 2*time.Minute)
	v := testkit.Verify(t, h, e, ledger)
	if v.Present != v.Acked || v.Gaps != 0 {
		t.Fatalf("%s", v)
	}
	slices.Sort(resumes)
	st := px.Stats()
	faultrun.Result(t, "flapping network", "%d cuts (%d resets, %d connections reset, %d refused), acks resumed after restore: median %v, max %v (limit 3 keepalives = %v); %s",
		flaps, (flaps+1)/2, st.Reset, st.Refused, resumes[len(resumes)/2].Round(time.Millisecond), resumes[len(resumes)-1].Round(time.Millisecond), 3*keepalive, v)
	if len(slow) > 0 {
		t.Fatalf("acks resumed later than 3 keepalives (%v) after %d restores: %s", 3*keepalive, len(slow), strings.Join(slow, "; "))
	}
}
