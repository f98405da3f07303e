package fleet_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"linli/shared/test/fleet"
	"linli/shared/test/poll"
	"linli/shared/test/testkit"
)

// A fleet of 20 enrolled edges over 4 sites, behind Mosquitto with the
// logins and ACLs the hub writes: every event is acked exactly once (one
// latency sample each) and held by the hub exactly once with its body;
// after a broker restart every edge reconnects by itself and delivers what
// it wrote meanwhile.
func TestFleetBehindMosquitto(t *testing.T) {
	t.Parallel()
	hubBin, _ := testkit.Binaries(t)
	data := filepath.Join(t.TempDir(), "hub")
	mqttAddr, httpAddr := testkit.StablePort(t), testkit.FreePort(t)
	broker := "tcp://" + mqttAddr
	hub := &testkit.Hub{URL: "http://" + httpAddr, Data: data, MQTT: broker}
	hub.Proc = testkit.Start(t, "hub", hubBin, []string{"--data", data, "--http", httpAddr,
		"--broker", broker, "--mosquitto-files", "--log-level", "warn"})
	acl := filepath.Join(data, "mosquitto", "acl")
	poll.Eventually(t, 10*time.Second, func() (bool, string) {
		_, err := os.Stat(acl)
		return err == nil, fmt.Sprint(err)
	})
	_, mosq := testkit.MosquittoConf(t, mqttAddr, "mosquitto-secure.conf",
		"password_file "+filepath.Join(data, "mosquitto", "passwd"), "acl_file "+acl, "user root")
	hub.WaitUp(t)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const edges, sites = 20, 4
	f, err := fleet.Enroll(ctx, fleet.Config{Hub: hub.URL, Token: hub.Token(t), Broker: broker, Dir: t.TempDir(),
		Edges: edges, Sites: sites, Batch: 8, BackoffMax: 500 * time.Millisecond, Parallel: 8,
		Log: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	// Mosquitto reads the logins the enrollments added on SIGHUP.
	if err := syscall.Kill(mosq.PID(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if err := f.Start(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	siteOf := map[string]bool{}
	for _, e := range f.Edges {
		siteOf[e.Site] = true
	}
	if len(siteOf) != sites {
		t.Fatalf("edges spread over %d sites, want %d", len(siteOf), sites)
	}

	const rate, dur = 200.0, 2 * time.Second
	wrote := f.Pace(ctx, rate, dur)
	if wrote != int64(rate*dur.Seconds()) {
		t.Fatalf("paced writer wrote %d events in %v, want %v", wrote, dur, rate*dur.Seconds())
	}
	if err := f.WaitCaughtUp(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	lat := f.Latencies()
	if int64(len(lat)) != wrote {
		t.Fatalf("%d latency samples for %d events: each event must be acked exactly once", len(lat), wrote)
	}
	if p := fleet.Percentile(lat, 0.99); p <= 0 || p > 10*time.Second {
		t.Fatalf("ack p99 %v", p)
	}

	// The broker restarts: every edge loses its session, records offline,
	// reconnects and delivers.
	if err := mosq.Stop(); err != nil {
		t.Fatal(err)
	}
	poll.Eventually(t, 30*time.Second, func() (bool, string) {
		return f.Connected() == 0, fmt.Sprintf("%d edges still connected", f.Connected())
	})
	f.WriteEach(3)
	mosq.Restart()
	if err := f.WaitCaughtUp(ctx, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	if n := len(f.Latencies()); n != edges*3 {
		t.Fatalf("%d latency samples after the restart, want %d", n, edges*3)
	}
	st := f.Stats()
	if st.Written != uint64(wrote)+edges*3 || st.Acked != st.Written || st.AcksRefused != 0 {
		t.Fatalf("stats %+v", st)
	}
	if st.Sessions < 2*edges {
		t.Fatalf("%d sessions, want every edge to have reconnected (%d)", st.Sessions, 2*edges)
	}

	// The hub holds every event once, with the body the edge wrote.
	for n, e := range f.Edges {
		w, _ := e.Cursors()
		evs, err := testkit.FetchEvents(ctx, hub.URL, hub.Token(t), e.ID)
		if err != nil {
			t.Fatal(err)
		}
		if uint64(len(evs)) != w {
			t.Fatalf("hub holds %d events of %s, it wrote %d", len(evs), e.ID, w)
		}
		for i, ev := range evs {
			seq := uint64(i + 1)
			want := fleet.Body(n, seq)
			if ev.Seq != seq || ev.Kind != want.Kind().String() {
				t.Fatalf("%s event %d: hub holds seq %d kind %s, want %d %s", e.ID, i, ev.Seq, ev.Kind, seq, want.Kind())
			}
			if r, ok := ev.Body["resident"].(string); ok && r != "R"+strconv.Itoa(n)+"-"+strconv.FormatUint(seq, 10) {
				t.Fatalf("%s seq %d: resident %q", e.ID, seq, r)
			}
		}
		if d, err := hub.Device(ctx, e.ID); err != nil || d.AckedSeq != w || !strings.HasPrefix(d.ID, "fleet-") {
			t.Fatalf("hub's record of %s: %+v %v", e.ID, d, err)
		}
	}
}
