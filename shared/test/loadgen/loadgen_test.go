package loadgen_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"linli/shared/test/loadgen"
	"linli/shared/test/poll"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Max writes in all, each write number once, however many workers race.
func TestPoolMaxWritesEachNumberOnce(t *testing.T) {
	var mu sync.Mutex
	seen := map[int64]int{}
	loadgen.Go(context.Background(), loadgen.Config{Workers: 7, Max: 500}, func(_ context.Context, _ int, i int64) bool {
		mu.Lock()
		seen[i]++
		mu.Unlock()
		return true
	}).Wait()
	if len(seen) != 500 {
		t.Fatalf("%d distinct writes, want 500", len(seen))
	}
	for i := int64(1); i <= 500; i++ {
		if seen[i] != 1 {
			t.Fatalf("write %d made %d times", i, seen[i])
		}
	}
}

func TestPoolStops(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    loadgen.Config
		op   func(n int64) bool
		stop bool // call Stop, not Wait
		max  int64
	}{
		{"For ends it", loadgen.Config{Workers: 3, For: 100 * time.Millisecond}, func(int64) bool { return true }, false, 0},
		{"Rate paces it", loadgen.Config{Workers: 4, For: 300 * time.Millisecond, Rate: 50}, func(int64) bool { return true }, false, 30},
		{"an op ends its worker", loadgen.Config{Workers: 2}, func(int64) bool { return false }, false, 2},
		{"Stop ends it", loadgen.Config{Workers: 2, Pause: time.Millisecond}, func(int64) bool { return true }, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var n atomic.Int64
			p := loadgen.Go(context.Background(), tc.c, func(_ context.Context, _ int, _ int64) bool { return tc.op(n.Add(1)) })
			if tc.stop {
				poll.WaitFor(t, "ten writes", func() bool { return n.Load() >= 10 })
			}
			done := make(chan struct{})
			go func() {
				if tc.stop {
					p.Stop()
				} else {
					p.Wait()
				}
				close(done)
			}()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("the pool did not end")
			}
			if tc.max > 0 && n.Load() > tc.max {
				t.Errorf("%d writes, want at most %d", n.Load(), tc.max)
			}
		})
	}
}

// An edge stand-in on loopback: it answers every write with the next seq,
// and 400 for readings.
func edge(t *testing.T) (*httptest.Server, *sync.Map) {
	var seq atomic.Uint64
	var bodies sync.Map // path+marker → body
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		if r.URL.Path == "/api/v1/readings" {
			w.WriteHeader(400)
			fmt.Fprint(w, `{"error":"no sensors here"}`)
			return
		}
		bodies.Store(r.URL.Path+" "+loadgen.Marker(body), body)
		w.WriteHeader(201)
		fmt.Fprintf(w, `{"seq":%d}`, seq.Add(1))
	}))
	t.Cleanup(srv.Close)
	return srv, &bodies
}

type ledger struct {
	mu    sync.Mutex
	tried int
	acked map[uint64]string
}

func (l *ledger) Tried(string) { l.mu.Lock(); l.tried++; l.mu.Unlock() }
func (l *ledger) Record(_ string, seq uint64, marker string) {
	l.mu.Lock()
	l.acked[seq] = marker
	l.mu.Unlock()
}

func TestStartRecordsAnsweredWrites(t *testing.T) {
	srv, bodies := edge(t)
	l := &ledger{acked: map[uint64]string{}}
	load := loadgen.Start(srv.URL, "k1", l, loadgen.Config{Workers: 4, Max: 90, Prefix: "T",
		Kinds: []string{loadgen.Checkin, loadgen.Reading, loadgen.Access}})
	load.Wait()
	if load.OK() != 60 || load.Failed() != 30 {
		t.Errorf("ok %d failed %d, want 60 and 30 (every reading refused)", load.OK(), load.Failed())
	}
	if c := load.Codes(); c[201] != 60 || c[400] != 30 {
		t.Errorf("codes %v", c)
	}
	if l.tried != 90 || len(l.acked) != 60 {
		t.Errorf("ledger: %d tried, %d acked; want 90 and 60", l.tried, len(l.acked))
	}
	// Write i of the cycle is Kinds[i%3]: 3 is a check-in, 5 an access event.
	if _, ok := bodies.Load("/api/v1/checkins T3"); !ok {
		t.Error("no check-in for write 3")
	}
	if _, ok := bodies.Load("/api/v1/access T5"); !ok {
		t.Error("no access event with door T5 for write 5")
	}
}

func TestRequest(t *testing.T) {
	for _, kind := range []string{loadgen.Checkin, loadgen.Reading, loadgen.Access, loadgen.Report, loadgen.LargeReport} {
		path, body, marker, err := loadgen.Request(kind, "M", 42)
		if err != nil || marker != "M42" || path == "" {
			t.Fatalf("%s: %q %q %v", kind, path, marker, err)
		}
		var b map[string]any
		if err := json.Unmarshal(body, &b); err != nil || loadgen.Marker(b) != "M42" {
			t.Errorf("%s: body %s does not carry its marker (%v)", kind, body, err)
		}
	}
	if _, _, _, err := loadgen.Request("pizza", "M", 1); err == nil {
		t.Error("unknown kind: want an error")
	}
}
