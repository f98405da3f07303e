package server

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"linli/shared/event"
	"linli/shared/hlc"
	"linli/shared/test/poll"
	"linli/shared/wire"
)

// Resolved reports leave the hub's memory at the snapshot once the hold
// has passed; after a restart the operator API and Open311 still answer
// for them (by id and in the closed list), and a kiosk's rating and a
// resident's reopen of one fold as they would have in memory.
func TestHubServesArchivedReports(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	start := func() (*Hub, *syncBuf) {
		t.Helper()
		var logs syncBuf
		cfg := hubConfig(dir)
		cfg.SnapshotEvery = time.Hour
		cfg.MemoryHold = time.Millisecond // everything resolved is cold at the stop
		h, err := Start(context.Background(), cfg, slog.New(slog.NewTextHandler(&logs, nil)))
		if err != nil {
			t.Fatal(err)
		}
		waitSubscribed(t, h)
		return h, &logs
	}
	get := func(h *Hub, path string, v any) int {
		t.Helper()
		resp, body := send(t, "GET", h.HTTPURL()+path, map[string]string{"Authorization": "Bearer " + h.AdminToken()}, "")
		if resp.StatusCode == 200 {
			if err := json.Unmarshal(body, v); err != nil {
				t.Fatalf("GET %s: %v: %s", path, err, body)
			}
		}
		return resp.StatusCode
	}
	type report struct {
		Status  string `json:"status"`
		Votes   uint32 `json:"votes"`
		Ratings struct {
			Count uint32 `json:"count"`
		} `json:"ratings"`
	}
	type request311 struct {
		ID     string `json:"service_request_id"`
		Status string `json:"status"`
	}

	h, _ := start()
	f := dialEdge(t, h.MQTTAddr(), "s1", "kiosk-s")
	f.publish(wire.Up{Hello: &wire.Hello{Role: "kiosk", LastSeq: 4}})
	f.waitAck(0, 1)
	f.publish(f.batch(1, 4))
	f.waitAck(4, 2)
	for _, id := range []string{"kiosk-s.1", "kiosk-s.2", "kiosk-s.3"} {
		resp, body := send(t, "PATCH", h.HTTPURL()+"/api/v1/reports/"+id, map[string]string{"Authorization": "Bearer " + h.AdminToken()},
			`{"status":"resolved","note":"修好了"}`)
		if resp.StatusCode != 200 {
			t.Fatalf("resolve %s: %d %s", id, resp.StatusCode, body)
		}
	}
	resolved := time.Now()
	f.c.Disconnect(100)
	// The hold is a millisecond of the hub's clock: the stop's snapshot
	// must come after it.
	poll.WaitFor(t, "the hold to pass", func() bool { return time.Since(resolved) > 5*time.Millisecond })
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}

	h, logs := start()
	if !strings.Contains(logs.String(), "snapshot=true") {
		t.Fatalf("the start did not read the snapshot: %s", logs)
	}
	var rep report
	if code := get(h, "/api/v1/reports/kiosk-s.1", &rep); code != 200 || rep.Status != event.ReportResolved {
		t.Fatalf("archived report by id: %d %+v", code, rep)
	}
	// The list holds the archived reports unless archived=0 leaves them
	// out (the dashboard's refresh); a query for an open status never
	// matches one.
	for _, tc := range []struct {
		query string
		want  int
	}{
		{"", 4}, {"?archived=1", 4}, {"?archived=0", 1},
		{"?status=resolved", 3}, {"?status=resolved&archived=0", 0}, {"?status=accepted", 0}, {"?status=submitted", 1},
	} {
		var list []struct {
			ID string `json:"id"`
		}
		if code := get(h, "/api/v1/reports"+tc.query, &list); code != 200 || len(list) != tc.want {
			t.Fatalf("GET /api/v1/reports%s: %d %+v, want %d reports", tc.query, code, list, tc.want)
		}
	}
	if resp, body := send(t, "GET", h.HTTPURL()+"/api/v1/reports?archived=no", map[string]string{"Authorization": "Bearer " + h.AdminToken()}, ""); resp.StatusCode != 400 || !strings.Contains(string(body), "archived") {
		t.Fatalf("archived=no: %d %s, want 400 naming archived", resp.StatusCode, body)
	}
	var one []request311
	if code := get(h, "/open311/v2/requests/kiosk-s.2.json", &one); code != 200 || len(one) != 1 || one[0].Status != "closed" {
		t.Fatalf("Open311 GET of an archived request: %d %+v", code, one)
	}
	var closed []request311
	if code := get(h, "/open311/v2/requests.json?status=closed", &closed); code != 200 || len(closed) != 3 {
		t.Fatalf("Open311 closed list: %d %+v, want the 3 resolved", code, closed)
	}
	var open []request311
	if code := get(h, "/open311/v2/requests.json?status=open", &open); code != 200 || len(open) != 1 {
		t.Fatalf("Open311 open list: %d %+v, want the one left open", code, open)
	}

	// A rating of one archived report and a reopen of another, from the
	// kiosk: both fold into the archived report.
	f = dialEdge(t, h.MQTTAddr(), "s1", "kiosk-s")
	f.publish(wire.Up{Hello: &wire.Hello{Role: "kiosk", LastSeq: 6}})
	f.waitAck(4, 1)
	var evs []event.Event
	for seq, body := range map[uint64]event.Body{
		5: &event.Rating{Resident: "R1", Target: "kiosk-s.1", Score: 5},
		6: &event.ReportReopen{Report: "kiosk-s.2", Resident: "R2", Reason: "又坏了"},
	} {
		ev, err := event.NewEvent("", seq, hlc.FromTime(time.Now()), body) // after the resolution
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	if evs[0].Seq > evs[1].Seq {
		evs[0], evs[1] = evs[1], evs[0]
	}
	b, err := wire.NewBatch(5, 6, evs, false, 5)
	if err != nil {
		t.Fatal(err)
	}
	f.publish(wire.Up{Batch: b})
	f.waitAck(6, 2)
	f.c.Disconnect(100)
	if code := get(h, "/api/v1/reports/kiosk-s.1", &rep); code != 200 || rep.Ratings.Count != 1 || rep.Status != event.ReportResolved {
		t.Fatalf("rated archived report: %d %+v", code, rep)
	}
	if code := get(h, "/api/v1/reports/kiosk-s.2", &rep); code != 200 || rep.Status != event.ReportAccepted {
		t.Fatalf("reopened archived report: %d %+v, want accepted", code, rep)
	}
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}

	// Once more from the snapshot: the rating was archived with its report.
	h, _ = start()
	defer h.Stop()
	if code := get(h, "/api/v1/reports/kiosk-s.1", &rep); code != 200 || rep.Ratings.Count != 1 {
		t.Fatalf("rated report after another restart: %d %+v", code, rep)
	}
	if code := get(h, "/api/v1/reports/kiosk-s.2", &rep); code != 200 || rep.Status != event.ReportAccepted {
		t.Fatalf("reopened report after another restart: %d %+v", code, rep)
	}
}
