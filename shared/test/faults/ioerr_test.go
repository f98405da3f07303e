package faults

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"linli/shared/test/faults/faultrun"
	"linli/shared/test/lazyfs"
	"linli/shared/test/netproxy"
	"linli/shared/test/testkit"
)

// Scenario 3: I/O errors, the way SQLite's tests inject them. For N = 1,
// 2, …, the Nth write (or fsync) through the layer after the edge is up
// fails with EIO, once (transient) or from then on (persistent). The
// writer must get an error and no 2xx for what failed, the edge must not
// panic, and after a power cut on top every write answered 2xx must still
// reach the hub exactly once.
func TestIOErrors(t *testing.T) {
	t.Parallel()
	maxN := faultrun.Scale(3, 12)
	h := embeddedHub(t)
	ledger := testkit.NewLedger()
	rounds, failedWrites, acked := 0, 0, 0
	var lines []string
	for _, c := range []struct {
		name       string
		file       string // the fault hits this kind of file
		kind       string
		concurrent bool
	}{
		// A kiosk's check-in takes Badger's synced commit (its seat
		// decision is written beside the event): a fault in the WAL
		// (.mem) must cost a write.
		{"wal-serial", ".mem", testkit.WriteCheckin, false},
		{"wal-concurrent", ".mem", testkit.WriteCheckin, true},
		// On a disk whose syncs are slow (3 ms here) a report is
		// answered once the outbox journal (.jnl) holds it: a fault there
		// must cost a write; one in Badger's WAL, where reports go after
		// their answer, must lose none.
		{"journal-serial", ".jnl", testkit.WriteReport, false},
		{"journal-concurrent", ".jnl", testkit.WriteReport, true},
		{"journal-wal-concurrent", ".mem", testkit.WriteReport, true},
		// The value log: Badger logs and ignores its sync errors, so no
		// event may depend on it (large reports would, by default).
		{"vlog-serial-large", ".vlog", testkit.WriteLargeReport, false},
	} {
		for _, op := range []lazyfs.Op{lazyfs.OpFsync, lazyfs.OpWrite} {
			for _, persistent := range []bool{false, true} {
				mode := map[bool]string{false: "transient", true: "persistent"}[persistent]
				for n := 1; n <= maxN; n++ {
					name := fmt.Sprintf("%s-%s-%s-%d", c.name, op, mode, n)
					fault := lazyfs.Fault{Op: op, N: n, Persistent: persistent, Suffix: c.file}
					t.Run(name, func(t *testing.T) {
						o := ioRound(t, h, ledger, fault, c.kind, c.concurrent, journalDelay(c.file, c.kind))
						rounds++
						failedWrites += o.failed
						acked += o.v.Acked
						lines = append(lines, fmt.Sprintf("%s: %s", name, o.codes))
						answers := c.file == ".jnl" || c.file == ".mem" && c.kind == testkit.WriteCheckin
						if answers && !c.concurrent && o.failed == 0 {
							t.Errorf("%s #%d of the %s failed and no write was refused: %s", op, n, c.file, o.codes)
						}
					})
					if t.Failed() {
						return
					}
				}
			}
		}
	}
	t.Logf("answers after the fault was armed, per round:\n%s", strings.Join(lines, "\n"))
	faultrun.Result(t, "I/O errors (Nth write/fsync fails)", "%d rounds (N = 1..%d × write/fsync × transient/persistent × check-ins on the WAL serial/concurrent, reports on the journal serial/concurrent and on the WAL, large reports on the value log), %d writes refused with a 5xx, %d acked events all present after a power cut on top; no panic",
		rounds, maxN, failedWrites, acked)
}

type ioOutcome struct {
	codes  string // answers in order: 201 or the error status
	failed int
	v      testkit.Verdict
}

// journalDelay is the fsync delay of a round: the outbox takes its
// journal only when Badger's synced commits are slow (a card's), so the
// rounds of reports get a slow disk.
func journalDelay(file, kind string) time.Duration {
	if file == ".jnl" || kind == testkit.WriteReport {
		return 3 * time.Millisecond
	}
	return 0
}

func ioRound(t *testing.T, h *testkit.Hub, ledger *testkit.Ledger, fault lazyfs.Fault, kind string, concurrent bool, fsyncDelay time.Duration) ioOutcome {
	t.Helper()
	id := fmt.Sprintf("kiosk-io%s-%s-%d-%s", strings.TrimPrefix(fault.Suffix, "."), fault.Op, fault.N, map[bool]string{false: "t", true: "p"}[fault.Persistent])
	if concurrent {
		id += "-c"
	}
	switch kind {
	case testkit.WriteLargeReport:
		id += "-large"
	case testkit.WriteReport:
		id += "-report"
	}
	d := newDisk(t)
	d.fs.SetFsyncDelay(fsyncDelay)
	// The uplink goes through a proxy: serial rounds cut it while the fault
	// is armed, so every fsync the layer sees belongs to a write.
	brokerAddr := strings.TrimPrefix(h.MQTT, "tcp://")
	px, err := netproxy.Start(brokerAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { px.Close() })
	e := testkit.StartEdge(t, testkit.EdgeConfig{ID: id, Broker: "tcp://" + px.Addr(), Data: d.data()})
	ctx := context.Background()
	for i := range 10 {
		if w, err := e.Write(ctx, ledger, testkit.WriteCheckin, "I", int64(i)); err != nil || w.Code != 201 {
			t.Fatalf("write %d before the fault: %+v %v", i, w, err)
		}
	}
	var o ioOutcome
	if !concurrent {
		e.Drained(t, time.Minute)
		px.Cut(netproxy.Reset)
		d.fs.SetFault(&fault)
		var codes []string
		firstFail := -1
		for i := 10; i < 10+max(10, fault.N+3); i++ {
			w, err := e.Write(ctx, ledger, kind, "I", int64(i))
			switch {
			case err != nil:
				codes = append(codes, "err")
			case w.Code == 201:
				codes = append(codes, "201")
			default:
				codes = append(codes, fmt.Sprint(w.Code))
			}
			if err != nil || w.Code != 201 {
				o.failed++
				if firstFail < 0 {
					firstFail = i - 10
				}
				if err == nil && (w.Code < 500 || w.Body == "") {
					t.Errorf("write %d: %d %q, want a 5xx with a body saying it was not saved", i, w.Code, w.Body)
				}
			}
			if e.Exited() {
				codes = append(codes, "exited")
				break
			}
		}
		o.codes = strings.Join(codes, " ")
		if fault.Persistent && firstFail >= 0 && strings.Count(strings.Join(codes[firstFail:], " "), "201") > 0 {
			t.Errorf("a write was answered 201 after a persistent I/O error: %s", o.codes)
		}
	} else {
		// Group commits spanning pages, acks committing beside them, the
		// uplink reading as they land.
		d.fs.SetFault(&fault)
		load := testkit.StartLoad(e, ledger, testkit.LoadConfig{Workers: 6, Kinds: []string{kind}, Prefix: "J"})
		time.Sleep(300 * time.Millisecond)
		load.Stop()
		o.failed = int(load.Failed())
		o.codes = fmt.Sprintf("%d acked, %d refused", load.OK(), load.Failed())
	}
	d.fs.SetFault(nil)
	if strings.Contains(e.Log(), "panic") {
		t.Fatalf("the edge panicked after the I/O error:\n%s", tail(e.Log(), 3000))
	}
	// A power cut on top of the error: only what was synced survives.
	e.Kill()
	d.cut()
	d.mount()
	d.fs.SetFsyncDelay(fsyncDelay)
	px.Restore()
	e.Restart()
	if err := waitHealthy(e, 60*time.Second); err != nil {
		t.Fatalf("the store did not open after the I/O error and a cut: %v", err)
	}
	// The edge writes again after the fault is gone.
	if w, err := e.Write(ctx, ledger, testkit.WriteCheckin, "I", 99); err != nil || w.Code != 201 {
		t.Fatalf("write after recovery: %+v %v", w, err)
	}
	e.Drained(t, 2*time.Minute)
	o.v = testkit.Verify(t, h, e, ledger)
	if o.v.Present != o.v.Acked {
		t.Fatalf("%s", o.v)
	}
	return o
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
