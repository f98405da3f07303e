package outage

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"linli/shared/test/faults/faultrun"
	"linli/shared/test/poll"
	"linli/shared/test/testkit"
)

// Scenario 5: a long outage. The hub is unreachable while a building
// gateway records 200,000 door decisions and sensor readings (1,000,000 in
// the long form) under concurrent HTTP load;
// then the hub starts. Everything must drain exactly once, the edge's disk
// use must fall back once the hub has acked (retention 1 s, GC every 1 s
// here), and its memory must stay bounded (peak RSS from VmHWM). Reports
// the catch-up rate.
func TestLongOutage(t *testing.T) {
	t.Parallel()
	n := faultrun.Scale(200_000, 1_000_000)
	const id = "gw-outage"
	mqttAddr := testkit.StablePort(t)
	e := testkit.StartEdge(t, testkit.EdgeConfig{ID: id, Role: "gateway", Broker: "tcp://" + mqttAddr,
		Args: []string{"--retention", "1s", "--gc-interval", "1s"}})
	ledger := testkit.NewLedger()
	// VmHWM counts the store's memory-mapped files (tables, WAL) too, which
	// grow with the backlog and which the kernel can drop; anonymous memory
	// (heap, memtable arenas, caches) is what must stay bounded.
	var peakAnon atomic.Uint64
	stop := sampleAnon(e, &peakAnon)
	defer stop()
	start := time.Now()
	if ok := testkit.RunLoadgen(t, e, ledger, "mix", "O", int64(n), 16); ok != int64(n) {
		t.Fatalf("%d of %d writes acked while offline", ok, n)
	}
	fillTook := time.Since(start)
	before, err := testkit.DiskUsage(e.Data)
	if err != nil {
		t.Fatal(err)
	}
	hwmFill, err := testkit.ProcStatus(e.PID(), "VmHWM")
	if err != nil {
		t.Fatal(err)
	}
	h := testkit.StartHub(t, testkit.HubConfig{Data: filepath.Join(t.TempDir(), "hub"), MQTTAddr: mqttAddr})
	t0 := time.Now()
	e.Drained(t, faultrun.Scale(5*time.Minute, 20*time.Minute))
	drainTook := time.Since(t0)
	rate := float64(n) / drainTook.Seconds()
	// Disk use falls back once acked events pass retention and are
	// compacted away.
	var after int64
	poll.Eventually(t, 3*time.Minute, func() (bool, string) {
		after, err = testkit.DiskUsage(e.Data)
		return err == nil && after < before/2, fmt.Sprintf("edge data dir %s after the drain, %s before (%v): %s", testkit.MiB(after), testkit.MiB(before), err, listDir(e.Data))
	})
	v := testkit.Verify(t, h, e, ledger)
	if v.Present != n || v.Gaps != 0 {
		t.Fatalf("%s", v)
	}
	hwm, err := testkit.ProcStatus(e.PID(), "VmHWM")
	if err != nil {
		t.Fatal(err)
	}
	stop()
	anon := peakAnon.Load()
	faultrun.Result(t, "long outage", "%d events written offline in %v (%.0f/s), drained in %v: catch-up %.0f events/s; edge data dir %s before the drain, %s after; edge peak RSS (VmHWM, store mmaps included) %s while writing, %s by the end of the drain, peak anonymous RSS %s; %s",
		n, fillTook.Round(time.Second), float64(n)/fillTook.Seconds(), drainTook.Round(100*time.Millisecond), rate,
		testkit.MiB(before), testkit.MiB(after), testkit.MiB(int64(hwmFill)), testkit.MiB(int64(hwm)), testkit.MiB(int64(anon)), v)
	if anon > 192<<20 {
		t.Errorf("edge peak anonymous RSS %s, want it bounded (under 192 MiB)", testkit.MiB(int64(anon)))
	}
}

// listDir names the files of dir with their allocated sizes.
func listDir(dir string) string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err.Error()
	}
	var parts []string
	for _, en := range entries {
		if n, err := testkit.DiskUsage(filepath.Join(dir, en.Name())); err == nil {
			parts = append(parts, fmt.Sprintf("%s %s", en.Name(), testkit.MiB(n)))
		}
	}
	return strings.Join(parts, ", ")
}

// sampleAnon keeps the edge's highest RssAnon in peak until stop.
func sampleAnon(e *testkit.Edge, peak *atomic.Uint64) (stop func()) {
	done, quit := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			if v, err := testkit.ProcStatus(e.PID(), "RssAnon"); err == nil && v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-quit:
				return
			case <-tick.C:
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(quit); <-done }) }
}
