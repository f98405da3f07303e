package faults

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"linli/shared/test/faults/faultrun"
	"linli/shared/test/poll"
	"linli/shared/test/testkit"
)

// Scenario 9: clock chaos. Go programs ignore LD_PRELOAD time fakes, so the
// edge's wall clock is moved in process by a test-only offset
// (LINLI_TEST_CLOCK_OFFSET, read by edge/agent only, never a setting): the
// outbox's HLC and the uplink read time.Now plus the offset. While the hub
// is away the edge runs through phases whose clocks jump +24 h, −24 h
// (48 h back) and −1 h, restarted between them, mostly by SIGKILL, so the
// HLC's floor must come from disk. A report is filed under the clock a day
// ahead and "me too" votes for it come under clocks behind it.
//
// Then: every acked event reaches the hub exactly once, the HLCs in seq
// order never go backwards (across restarts and jumps), the merged report
// counts every vote whatever the clocks said, and the hub flags the skew.
func TestClockChaos(t *testing.T) {
	t.Parallel()
	const id = "kiosk-clock"
	perPhase := faultrun.Scale(200, 2000)
	mqttAddr := testkit.StablePort(t)
	data := filepath.Join(t.TempDir(), id)
	ledger := testkit.NewLedger()
	ctx := context.Background()
	phases := []struct {
		offset time.Duration
		kill   bool
	}{{0, true}, {24 * time.Hour, true}, {-24 * time.Hour, false}, {-25 * time.Hour, true}, {0, true}, {-time.Hour, false}}
	var reportID string
	votes := 0
	var lastSeqOfPhase []uint64
	for p, ph := range phases {
		e := testkit.StartEdge(t, testkit.EdgeConfig{ID: id, Data: data, Broker: "tcp://" + mqttAddr,
			Env: []string{"LINLI_TEST_CLOCK_OFFSET=" + ph.offset.String()}})
		load := testkit.StartLoad(e, ledger, testkit.LoadConfig{Workers: 4, Max: int64(perPhase), Prefix: fmt.Sprintf("C%d_", p)})
		load.Wait()
		if p == 1 {
			w, err := e.Write(ctx, ledger, testkit.WriteReport, "CLK", 1)
			if err != nil || w.Code != 201 {
				t.Fatalf("file report: %+v %v", w, err)
			}
			reportID = fmt.Sprintf("%s.%d", id, w.Seq)
		}
		if p >= 2 {
			for i := range 5 {
				resident := fmt.Sprintf("V%d_%d", p, i)
				var ans struct {
					Seq uint64 `json:"seq"`
				}
				code, err := testkit.Do(ctx, "POST", e.URL+"/api/v1/reports/"+reportID+"/votes", "",
					map[string]string{"resident": resident}, &ans)
				if err != nil || code != 201 {
					t.Fatalf("vote: %d %v", code, err)
				}
				ledger.Acked(id, ans.Seq, resident)
				votes++
			}
		}
		s, err := e.Sync(ctx)
		if err != nil {
			t.Fatal(err)
		}
		lastSeqOfPhase = append(lastSeqOfPhase, s.LastSeq)
		if ph.kill {
			e.Kill()
		} else if err := e.Stop(); err != nil {
			t.Fatalf("clean stop: %v", err)
		}
	}
	// The hub starts; the edge meets it with its clock an hour behind.
	h := testkit.StartHub(t, testkit.HubConfig{Data: filepath.Join(t.TempDir(), "hub"), MQTTAddr: mqttAddr})
	e := testkit.StartEdge(t, testkit.EdgeConfig{ID: id, Data: data, Broker: h.MQTT,
		Env: []string{"LINLI_TEST_CLOCK_OFFSET=-1h"}})
	e.Drained(t, 2*time.Minute)
	v := testkit.Verify(t, h, e, ledger)
	if v.Present != v.Acked || v.Gaps != 0 {
		t.Fatalf("%s", v)
	}
	evs := testkit.HubEvents(t, h, id)
	backwards := 0
	for i := 1; i < len(evs); i++ {
		if evs[i].HLC <= evs[i-1].HLC {
			backwards++
			if backwards <= 3 {
				t.Errorf("HLC went backwards: seq %d has %d, seq %d had %d", evs[i].Seq, evs[i].HLC, evs[i-1].Seq, evs[i-1].HLC)
			}
		}
	}
	// After the day-ahead phase every HLC stays a day ahead of the wall
	// clock: the clock never hands out a timestamp below one it issued.
	dayAhead := time.UnixMilli(int64(evs[lastSeqOfPhase[1]-1].HLC >> 16))
	if time.Until(dayAhead) < 20*time.Hour {
		t.Errorf("the last event of the +24h phase has HLC time %v, want about a day ahead", dayAhead)
	}
	var rep struct {
		Votes   int `json:"votes"`
		History []struct {
			Seq uint64 `json:"seq"`
		} `json:"history"`
	}
	poll.Eventually(t, 30*time.Second, func() (bool, string) {
		code, err := testkit.Do(ctx, "GET", h.URL+"/api/v1/reports/"+reportID, h.Token(t), nil, &rep)
		return err == nil && code == 200 && rep.Votes == votes, fmt.Sprintf("report %s: %d %v, %d votes of %d", reportID, code, err, rep.Votes, votes)
	})
	flagged := strings.Contains(h.Log(), "far off")
	if !flagged {
		t.Error("the hub did not flag the edge's clock skew")
	}
	faultrun.Result(t, "clock chaos", "%d phases (offsets 0, +24h, -24h, -25h, 0, -1h; %d SIGKILLs), %d events: HLC backwards %d times, report filed a day ahead merged with all %d votes cast behind it, hub flagged skew %v; %s",
		len(phases), 4, v.Acked, backwards, votes, flagged, v)
}
