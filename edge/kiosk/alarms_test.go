package kiosk

import (
	"bufio"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"linli/edge/api"
	"linli/edge/outbox"
	"linli/edge/replica"
	"linli/shared/event"
	"linli/shared/hlc"
	"linli/shared/merge"
	"linli/shared/test/edgetest"
	"linli/shared/wire"
)

func alarmChange(t *testing.T, seq uint64, v merge.AlarmView) wire.Change {
	t.Helper()
	body, err := event.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return wire.Change{Seq: seq, Entity: wire.EntityAlarm, ID: v.ID, HLC: hlc.FromTime(time.Now()), Body: body}
}

// readAlarms reads the next "alarms" event of a stream.
func readAlarms(t *testing.T, sc *bufio.Scanner) []AlarmOut {
	t.Helper()
	event := ""
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: ") && event == "alarms":
			var out []AlarmOut
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &out); err != nil {
				t.Fatalf("alarm stream data %q: %v", line, err)
			}
			return out
		}
	}
	t.Fatalf("alarm stream ended: %v", sc.Err())
	return nil
}

// A kiosk in building B1 is told at once, over its stream, of an alarm in
// B3 of the same site as soon as the replica applies the hub's change;
// kinds the site does not show residents (a forced door, by default) and
// alarms whose source cleared are left out.
func TestAlarmStreamPushesSiteAlarms(t *testing.T) {
	ob, db, err := edgetest.OpenLog(t, t.TempDir(), outbox.Options{Device: "kiosk-1", RetentionInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := ob.Close(); err != nil {
			t.Error(err)
		}
	}()
	rep, err := replica.Open(db, "s1", "kiosk-1", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	mirror := &Mirror{Rep: rep, Own: ob, Building: "B1"}
	feed := NewAlarmFeed(mirror)
	rep.AfterApply(feed.Changed)
	edge := &api.API{Role: api.RoleKiosk, Log: ob, Sync: offline{}, Replica: mirror}
	srv := httptest.NewServer(serve(edge, &Handlers{Alarms: feed}))
	defer srv.Close()
	defer feed.Close() // ends the stream before srv.Close waits for it

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", srv.URL+"/api/v1/alarms/stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "text/event-stream" {
		t.Fatalf("stream: %d %q", resp.StatusCode, ct)
	}
	sc := bufio.NewScanner(resp.Body)
	if got := readAlarms(t, sc); len(got) != 0 {
		t.Fatalf("first list %+v, want none", got)
	}

	since := hlc.FromTime(time.Date(2026, 12, 6, 9, 10, 0, 0, time.UTC))
	smoke := merge.AlarmView{ID: "s1:B3-smoke-1:smoke", Site: "s1", Building: "B3", Source: "B3-smoke-1", Kind: "smoke",
		Active: true, Open: true, First: since, Severity: "critical", Place: "3号楼 1单元 楼道烟感"}
	forced := merge.AlarmView{ID: "s1:B3-main:forced", Site: "s1", Building: "B3", Source: "B3-main", Kind: "forced",
		Open: true, Momentary: true, First: since, Severity: "minor"}
	if err := rep.Apply(wire.Down{Site: "s1", Prev: 0, Last: 2, Changes: []wire.Change{alarmChange(t, 1, forced), alarmChange(t, 2, smoke)}}); err != nil {
		t.Fatal(err)
	}
	got := readAlarms(t, sc)
	if len(got) != 1 || got[0].ID != smoke.ID || got[0].Building != "B3" || got[0].Place != smoke.Place || !got[0].Since.Equal(since.Time()) {
		t.Fatalf("pushed %+v, want the B3 smoke alarm alone (no forced door by default)", got)
	}

	cleared := smoke
	cleared.Active = false
	if err := rep.Apply(wire.Down{Site: "s1", Prev: 2, Last: 3, Changes: []wire.Change{alarmChange(t, 3, cleared)}}); err != nil {
		t.Fatal(err)
	}
	if got := readAlarms(t, sc); len(got) != 0 {
		t.Fatalf("after the source cleared: %+v, want none", got)
	}

	// A site that shows forced doors to residents sees it.
	kinds, err := ParseAlarmKinds("fire, water, forced")
	if err != nil {
		t.Fatal(err)
	}
	mirror.AlarmKinds = kinds
	list, err := mirror.Alarms()
	if err != nil || len(list) != 1 || list[0].Kind != "forced" {
		t.Fatalf("alarms with forced doors shown: %+v %v", list, err)
	}
	if _, err := ParseAlarmKinds("fire,smoke"); err == nil {
		t.Fatal("resident-alarms smoke: no error (the setting names groups: fire, water, forced, held_open)")
	}
}
