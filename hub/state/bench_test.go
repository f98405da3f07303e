package state

import (
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"linli/hub/downlink"
	"linli/hub/store"
	"linli/shared/event"
	"linli/shared/hlc"
	"linli/shared/kv"
)

// rssKB is the process's resident set (VmRSS) in KiB, 0 where /proc is
// not there.
func rssKB() float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return n
		}
	}
	return 0
}

// BenchmarkOpen measures a start of the merged state against history
// size, rebuilding from every fact and from a snapshot taken with the
// last 1 % of the facts after it:
//
//	go test -run '^$' -bench BenchmarkOpen -benchtime 3x ./hub/state/
//
// It reports the start's time (ns/op), the heap in use after it, and the
// process's resident set.
func BenchmarkOpen(b *testing.B) {
	for _, n := range []int{10_000, 100_000, 400_000} {
		dir := b.TempDir()
		log := slog.New(slog.DiscardHandler)
		st, err := store.Open(dir, kv.Server, log)
		if err != nil {
			b.Fatal(err)
		}
		s := openState(&testing.T{}, st)
		commit := n / 100 // the snapshot is taken before the last: 1 % of the facts after it
		for i := 0; i < n; i += commit {
			if i+commit >= n {
				if err := s.Snapshot(); err != nil {
					b.Fatal(err)
				}
			}
			evs := make([]event.Event, 0, commit)
			for j := i; j < min(i+commit, n); j++ {
				var body event.Body = &event.Checkin{Resident: "R" + strconv.Itoa(j%5000), Activity: "A" + strconv.Itoa(j%50), Action: "in"}
				if j%10 == 0 {
					body = &event.Report{Category: event.Categories[j%len(event.Categories)], Title: "t" + strconv.Itoa(j), Building: "B1"}
				}
				ev, err := event.NewEvent("k"+strconv.Itoa(j%4), uint64(j/4+1), hlc.Timestamp(1_000_000+j), body)
				if err != nil {
					b.Fatal(err)
				}
				evs = append(evs, ev)
			}
			ingestEvents(&testing.T{}, st, s, evs)
		}
		for _, mode := range []string{"full", "snapshot"} {
			build := ""
			if mode == "full" {
				build = "another build" // the snapshot is not trusted: every fact
			}
			b.Run(fmt.Sprintf("facts=%d/%s", n, mode), func(b *testing.B) {
				var heap, rss float64
				for range b.N {
					down, err := downlink.Open(st, discardPub{}, hlc.NewClock(nil, 0), nil, log)
					if err != nil {
						b.Fatal(err)
					}
					s2, err := Open(Options{Store: st, Downlink: down, Clock: hlc.NewClock(nil, 0), HubID: "hub",
						Kiosks: func(string) []string { return nil }, Logger: log, Build: build})
					if err != nil {
						b.Fatal(err)
					}
					b.StopTimer()
					runtime.GC()
					var ms runtime.MemStats
					runtime.ReadMemStats(&ms)
					heap, rss = float64(ms.HeapInuse)/(1<<20), rssKB()/1024
					runtime.KeepAlive(s2)
					b.StartTimer()
				}
				b.ReportMetric(heap, "heap-MB")
				b.ReportMetric(rss, "rss-MB")
			})
		}
		if err := st.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
