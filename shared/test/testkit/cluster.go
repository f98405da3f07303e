package testkit

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"linli/shared/test/loadgen"
	"linli/shared/test/poll"
	"linli/shared/test/process"
)

// StablePort is FreePort: a port reserved for this test process, below
// the kernel's ephemeral range, that no other test process takes while
// its server is down for a restart (process.FreeAddr).
func StablePort(t testing.TB) string {
	t.Helper()
	return FreePort(t)
}

// Hub is a linli-hub process under test.
type Hub struct {
	*Proc
	URL  string // http://…
	MQTT string // tcp://… for edges
	Data string
}

// HubConfig says how to start a hub. With Broker set the hub uses that
// external broker; otherwise its embedded broker listens on MQTTAddr.
type HubConfig struct {
	Data     string
	MQTTAddr string
	Broker   string
	Args     []string
}

// StartHub runs a hub and waits until it answers /healthz.
func StartHub(t testing.TB, c HubConfig) *Hub {
	t.Helper()
	hubBin, _ := Binaries(t)
	httpAddr := StablePort(t)
	args := []string{"--data", c.Data, "--http", httpAddr, "--log-level", "info"}
	h := &Hub{URL: "http://" + httpAddr, Data: c.Data}
	if c.Broker != "" {
		args = append(args, "--broker", c.Broker, "--id", "hub-"+filepath.Base(c.Data))
		h.MQTT = c.Broker
	} else {
		args = append(args, "--mqtt-listen", c.MQTTAddr)
		h.MQTT = "tcp://" + c.MQTTAddr
	}
	h.Proc = Start(t, "hub", hubBin, append(args, c.Args...))
	h.WaitUp(t)
	return h
}

// WaitUp waits until the hub answers /healthz.
func (h *Hub) WaitUp(t testing.TB) { t.Helper(); h.WaitServing(t, h.URL+"/healthz", 60*time.Second) }

// Token is the hub's admin token.
func (h *Hub) Token(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(h.Data, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// HubDevice is one row of the hub's GET /api/v1/devices.
type HubDevice struct {
	ID       string `json:"id"`
	AckedSeq uint64 `json:"acked_seq"`
	Received uint64 `json:"received"`
	Online   bool   `json:"online"`
}

// Device returns the hub's record of one device.
func (h *Hub) Device(ctx context.Context, id string) (HubDevice, error) {
	var ds []HubDevice
	code, err := Do(ctx, "GET", h.URL+"/api/v1/devices", "", nil, &ds)
	if err != nil || code != 200 {
		return HubDevice{}, fmt.Errorf("GET devices: %d %v", code, err)
	}
	for _, d := range ds {
		if d.ID == id {
			return d, nil
		}
	}
	return HubDevice{}, fmt.Errorf("hub does not know %s", id)
}

// Edge is a linli-edge process under test.
type Edge struct {
	*Proc
	ID   string
	URL  string
	Data string
}

// EdgeConfig says how to start an edge. Data defaults to a temp dir; Args
// come after the defaults (short backoff, ack timeout and keepalive) and
// override them.
type EdgeConfig struct {
	ID, Site, Role string
	Broker         string
	Data           string
	Args           []string
	Env            []string
}

// StartEdge runs an edge and waits until it answers /healthz.
func StartEdge(t testing.TB, c EdgeConfig) *Edge {
	t.Helper()
	_, edgeBin := Binaries(t)
	httpAddr := StablePort(t)
	if c.Data == "" {
		c.Data = filepath.Join(t.TempDir(), c.ID)
	}
	if c.Site == "" {
		c.Site = "s1"
	}
	if c.Role == "" {
		c.Role = "kiosk"
	}
	args := []string{"--id", c.ID, "--site", c.Site, "--role", c.Role, "--data", c.Data, "--http", httpAddr,
		"--broker", c.Broker, "--backoff-max", "500ms", "--ack-timeout", "2s", "--keepalive", "2s"}
	e := &Edge{ID: c.ID, URL: "http://" + httpAddr, Data: c.Data}
	e.Proc = Start(t, c.ID, edgeBin, append(args, c.Args...), c.Env...)
	e.WaitUp(t)
	return e
}

// WaitUp waits until the edge answers /healthz.
func (e *Edge) WaitUp(t testing.TB) { t.Helper(); e.WaitServing(t, e.URL+"/healthz", 60*time.Second) }

// SyncState is the edge's GET /api/v1/sync.
type SyncState struct {
	Connected bool   `json:"connected"`
	Pending   uint64 `json:"pending"`
	LastSeq   uint64 `json:"last_seq"`
	AckedSeq  uint64 `json:"acked_seq"`
}

// Sync reads the edge's sync state.
func (e *Edge) Sync(ctx context.Context) (SyncState, error) {
	var s SyncState
	code, err := Do(ctx, "GET", e.URL+"/api/v1/sync", "", nil, &s)
	if err == nil && code != 200 {
		err = fmt.Errorf("GET sync on %s: status %d", e.ID, code)
	}
	return s, err
}

// Drained waits until the edge has nothing pending and the hub has acked
// everything it wrote.
func (e *Edge) Drained(t testing.TB, timeout time.Duration) {
	t.Helper()
	poll.Eventually(t, timeout, func() (bool, string) {
		s, err := e.Sync(context.Background())
		return err == nil && s.Pending == 0 && s.AckedSeq == s.LastSeq, fmt.Sprintf("%s sync %+v %v", e.ID, s, err)
	})
}

// Kinds of writes the load generator makes (see loadgen).
const (
	WriteCheckin     = loadgen.Checkin
	WriteReading     = loadgen.Reading
	WriteAccess      = loadgen.Access
	WriteReport      = loadgen.Report
	WriteLargeReport = loadgen.LargeReport
)

// Written is the answer to one write.
type Written = loadgen.Written

// Write posts one event of kind to the edge with a unique marker built
// from prefix and i and records it in ledger when it is answered 2xx
// (ledger may be nil).
func (e *Edge) Write(ctx context.Context, ledger *Ledger, kind, prefix string, i int64) (Written, error) {
	return loadgen.Write(ctx, loadgen.Client, e.URL, e.ID, ledgerOrNil(ledger), kind, prefix, i)
}

// ledgerOrNil keeps a nil *Ledger a nil interface, which loadgen skips.
func ledgerOrNil(l *Ledger) loadgen.Ledger {
	if l == nil {
		return nil
	}
	return l
}

// Marker picks the load generator's marker out of a hub event body.
func Marker(body map[string]any) string { return loadgen.Marker(body) }

// Load writes to an edge from several goroutines until stopped.
type Load = loadgen.Load

// LoadConfig configures StartLoad: Workers, Kinds, Max, Prefix, Pause.
type LoadConfig = loadgen.Config

// StartLoad starts writing to e, tolerating errors (the edge may be down),
// and records every 2xx in ledger.
func StartLoad(e *Edge, ledger *Ledger, c LoadConfig) *Load {
	return loadgen.Start(e.URL, e.ID, ledgerOrNil(ledger), c)
}

// HubEvents fetches every event of device from the hub; none when the hub
// has never heard of the device.
func HubEvents(t testing.TB, h *Hub, device string) []HubEvent {
	t.Helper()
	if _, err := h.Device(context.Background(), device); err != nil {
		return nil
	}
	evs, err := FetchEvents(context.Background(), h.URL, h.Token(t), device)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// Verify fetches the edge's events from the hub and checks them against the
// ledger, failing the test unless every acked write is there exactly once.
func Verify(t testing.TB, h *Hub, e *Edge, ledger *Ledger) Verdict {
	t.Helper()
	v := ledger.Check(e.ID, HubEvents(t, h, e.ID), Marker)
	t.Logf("verdict %s", v)
	if !v.OK() {
		t.Fatalf("exactly-once violated: %s", v)
	}
	if r := ledger.Reused(e.ID); len(r) > 0 {
		t.Fatalf("%d seqs were answered 2xx for two different events (the first write is lost): %s", len(r), strings.Join(r[:min(5, len(r))], "; "))
	}
	return v
}

// ProcStatus reads one memory field of /proc/PID/status (VmHWM, VmRSS,
// RssAnon) in bytes.
func ProcStatus(pid int, field string) (uint64, error) {
	m, err := process.Memory(pid)
	if err != nil {
		return 0, err
	}
	v, ok := m[field]
	if !ok {
		return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
	}
	return v, nil
}

// DiskUsage is what du reports for dir: allocated bytes of its files.
func DiskUsage(dir string) (int64, error) { return process.DiskUsage(dir) }

// Record is Acked that notes a seq acked before for another event: the
// second answer silently replaces the first in the ledger, which would
// hide the first write's loss from Check. The load generator records so.
func (l *Ledger) Record(device string, seq uint64, marker string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if prev, seen := l.acked[device][seq]; seen && prev != marker {
		l.reused[device] = append(l.reused[device], fmt.Sprintf("seq %d: %s, then %s", seq, prev, marker))
	}
	l.ackLocked(device, seq, marker)
}

// Reused lists seqs of device answered 2xx for two different events.
func (l *Ledger) Reused(device string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.reused[device])
}

// MaxSeq is the highest seq acked for device (0 if none).
func (l *Ledger) MaxSeq(device string) uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var m uint64
	for seq := range l.acked[device] {
		m = max(m, seq)
	}
	return m
}

// Acks returns a copy of device's acked writes: seq → marker.
func (l *Ledger) Acks(device string) map[uint64]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[uint64]string, len(l.acked[device]))
	for k, v := range l.acked[device] {
		out[k] = v
	}
	return out
}

// MiB renders a byte count for logs.
func MiB(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
