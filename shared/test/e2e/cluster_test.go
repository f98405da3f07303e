package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"linli/shared/test/poll"
	"linli/shared/test/testkit"
)

type hubProc struct {
	*testkit.Proc
	URL  string
	MQTT string // tcp://… for edges
	Data string
}

// startHub runs a hub with its embedded broker on mqttAddr (or, with
// broker set, against that external broker).
func startHub(t *testing.T, data, mqttAddr, broker string, extra ...string) *hubProc {
	t.Helper()
	hubBin, _ := testkit.Binaries(t)
	httpAddr := testkit.FreePort(t)
	args := []string{"--data", data, "--http", httpAddr, "--log-level", "debug"}
	h := &hubProc{URL: "http://" + httpAddr, Data: data}
	if broker != "" {
		args = append(args, "--broker", broker, "--id", "hub-"+filepath.Base(data))
		h.MQTT = broker
	} else {
		args = append(args, "--mqtt-listen", mqttAddr)
		h.MQTT = "tcp://" + mqttAddr
	}
	h.Proc = testkit.Start(t, "hub", hubBin, append(args, extra...))
	h.WaitServing(t, h.URL+"/healthz", 20*time.Second)
	return h
}

func (h *hubProc) token(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(h.Data, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

type edgeProc struct {
	*testkit.Proc
	ID   string
	URL  string
	Data string
}

func startEdge(t *testing.T, id, site, role, broker string, extra ...string) *edgeProc {
	t.Helper()
	_, edgeBin := testkit.Binaries(t)
	httpAddr := testkit.FreePort(t)
	data := filepath.Join(t.TempDir(), id)
	args := []string{"--id", id, "--site", site, "--role", role, "--data", data, "--http", httpAddr,
		"--broker", broker, "--backoff-max", "500ms", "--ack-timeout", "2s", "--keepalive", "2s"}
	e := &edgeProc{ID: id, URL: "http://" + httpAddr, Data: data}
	e.Proc = testkit.Start(t, id, edgeBin, append(args, extra...))
	e.WaitServing(t, e.URL+"/healthz", 20*time.Second)
	return e
}

type syncState struct {
	Connected bool   `json:"connected"`
	Pending   uint64 `json:"pending"`
	LastSeq   uint64 `json:"last_seq"`
	AckedSeq  uint64 `json:"acked_seq"`
}

func (e *edgeProc) sync(t *testing.T) syncState {
	t.Helper()
	var s syncState
	if code, err := testkit.Do(context.Background(), "GET", e.URL+"/api/v1/sync", "", nil, &s); err != nil || code != 200 {
		t.Fatalf("GET sync on %s: %d %v", e.ID, code, err)
	}
	return s
}

type created struct {
	ID     string `json:"id"`
	Seq    uint64 `json:"seq"`
	Status string `json:"status"`
}

// load posts n check-ins to an edge from workers goroutines, each with a
// unique resident id as its marker, and records every 201 in the ledger.
// Errors (a killed edge) are counted, not fatal, when tolerate is set.
func load(ctx context.Context, t *testing.T, e *edgeProc, ledger *testkit.Ledger, n, workers int, tolerate bool) (okCount int64) {
	t.Helper()
	var next atomic.Int64
	var okN atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				marker := fmt.Sprintf("R%s%d", strings.ReplaceAll(e.ID, "-", ""), i)
				ledger.Tried(e.ID)
				var c created
				code, err := testkit.Do(ctx, "POST", e.URL+"/api/v1/checkins", "",
					map[string]string{"resident": marker, "activity": "A1"}, &c)
				if err != nil || code != 201 {
					if tolerate {
						continue
					}
					errs <- fmt.Errorf("post %d to %s: %d %v", i, e.ID, code, err)
					return
				}
				ledger.Acked(e.ID, c.Seq, marker)
				okN.Add(1)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return okN.Load()
}

// bulkLoad posts n check-ins to an edge as load does, from workers
// goroutines of the uninstrumented loadgen process: under -race, load's
// HTTP client spent more CPU than the edge it drove, and the tests that
// write a backlog of thousands took turns for it with every other test.
func bulkLoad(t *testing.T, e *edgeProc, ledger *testkit.Ledger, n, workers int) {
	t.Helper()
	prefix := "R" + strings.ReplaceAll(e.ID, "-", "")
	if ok := testkit.RunLoadgen(t, &testkit.Edge{Proc: e.Proc, ID: e.ID, URL: e.URL, Data: e.Data}, ledger,
		"checkin", prefix, int64(n), workers); ok != int64(n) {
		t.Fatalf("%d of %d check-ins answered 201 by %s", ok, n, e.ID)
	}
}

func residentMarker(body map[string]any) string {
	s, _ := body["resident"].(string)
	return s
}

// drained waits until the edge has nothing pending and the hub has acked
// everything the edge wrote.
func drained(t *testing.T, e *edgeProc, timeout time.Duration) {
	t.Helper()
	poll.Eventually(t, timeout, func() (bool, string) {
		s := e.sync(t)
		return s.Pending == 0 && s.AckedSeq == s.LastSeq, fmt.Sprintf("%s sync %+v", e.ID, s)
	})
}

// verify checks exactly-once delivery of every acked write of e at the hub.
func verify(t *testing.T, h *hubProc, e *edgeProc, ledger *testkit.Ledger) testkit.Verdict {
	t.Helper()
	evs, err := testkit.FetchEvents(context.Background(), h.URL, h.token(t), e.ID)
	if err != nil {
		t.Fatal(err)
	}
	v := ledger.Check(e.ID, evs, residentMarker)
	if !v.OK() {
		t.Fatalf("exactly-once violated: %s", v)
	}
	t.Logf("%s", v)
	return v
}

// enrollEdge issues a token at the hub (as `linli-hub device add` does) and
// enrolls a fresh data dir with `linli-edge enroll`; it returns the dir.
func enrollEdge(t *testing.T, h *hubProc, id, site, role string) string {
	t.Helper()
	var tok struct{ Token string }
	if code := h.do(t, "POST", "/api/v1/devices", map[string]string{"id": id, "site": site, "role": role}, &tok); code != 201 {
		t.Fatalf("issue token for %s: %d", id, code)
	}
	_, edgeBin := testkit.Binaries(t)
	data := filepath.Join(t.TempDir(), id)
	out, err := exec.Command(edgeBin, "enroll", "--hub", h.URL, "--token", tok.Token, "--data", data).CombinedOutput()
	if err != nil {
		t.Fatalf("enroll %s: %v\n%s", id, err, out)
	}
	return data
}

// startEnrolledEdge enrolls an edge and runs it; id, site and role come
// from its identity.
func startEnrolledEdge(t *testing.T, h *hubProc, id, site, role string, extra ...string) *edgeProc {
	t.Helper()
	data := enrollEdge(t, h, id, site, role)
	_, edgeBin := testkit.Binaries(t)
	httpAddr := testkit.FreePort(t)
	args := []string{"--data", data, "--http", httpAddr, "--broker", h.MQTT,
		"--backoff-max", "500ms", "--ack-timeout", "2s", "--keepalive", "2s"}
	e := &edgeProc{ID: id, URL: "http://" + httpAddr, Data: data}
	e.Proc = testkit.Start(t, id, edgeBin, append(args, extra...))
	e.WaitServing(t, e.URL+"/healthz", 20*time.Second)
	return e
}

func readFile(path string) ([]byte, error) { return os.ReadFile(path) }
