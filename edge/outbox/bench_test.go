package outbox

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"linli/shared/event"
	"linli/shared/kv"
)

// BenchmarkAppendConcurrent appends from 32 goroutines, as 32 HTTP clients
// of a busy gateway do: each append returns once its group commit is
// synced. Compare with BenchmarkSyncedTxnPerEvent (shared/bench scenario 1
// measures the same over HTTP with real processes).
func BenchmarkAppendConcurrent(b *testing.B) {
	for _, writers := range []int{1, 8, 32, 128} {
		for _, linger := range []time.Duration{-1, 0} {
			name := itoa(writers) + "writers"
			if linger < 0 {
				name += "/nolinger"
			}
			b.Run(name, func(b *testing.B) { benchAppend(b, writers, linger) })
		}
	}
}

func benchAppend(b *testing.B, writers int, linger time.Duration) {
	{
		{
			l, err := Open(openStore(b, b.TempDir()).DB(), Options{Device: "gw-1", Retention: time.Hour, RetentionInterval: time.Hour, Linger: linger})
			if err != nil {
				b.Fatal(err)
			}
			defer func() {
				if err := l.Close(); err != nil {
					b.Error(err)
				}
			}()
			ctx := context.Background()
			var next atomic.Int64
			n := int64(b.N)
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime(b)
			var wg sync.WaitGroup
			for range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := next.Add(1); i <= n; i = next.Add(1) {
						if _, err := l.Append(ctx, checkin(int(i))); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			st := l.Stats()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64(st.LastSeq)/float64(max(st.Commits, 1)), "events/commit")
			b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(time.Microsecond)/float64(b.N), "cpu-µs/event")
		}
	}
}

// BenchmarkSyncedTxnPerEvent is the naive baseline: one synced Badger
// transaction per event, with the outbox's options.
func BenchmarkSyncedTxnPerEvent(b *testing.B) {
	db, err := kv.OpenWith(kv.Options(b.TempDir(), kv.Small, slog.New(slog.DiscardHandler)))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		raw, err := event.Marshal(checkin(i))
		if err != nil {
			b.Fatal(err)
		}
		ev := event.Event{Seq: uint64(i + 1), HLC: 1, Kind: event.KindCheckin, Body: raw}
		val, err := ev.Encode()
		if err != nil {
			b.Fatal(err)
		}
		if err := db.Update(func(txn *badger.Txn) error { return txn.Set(kv.Key(prefixEvent, kv.U64(uint64(i+1))), val) }); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

// cpuTime is the CPU time the process has used, user and system.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
