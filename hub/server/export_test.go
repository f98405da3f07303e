package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"testing"
	"time"

	"linli/shared/event"
	"linli/shared/hlc"
	"linli/shared/wire"
)

// login creates an account and returns its session cookie.
func login(t *testing.T, base string, admin map[string]string, name, role, sites string) map[string]string {
	t.Helper()
	if resp, out := send(t, "POST", base+"/api/v1/operators", admin,
		fmt.Sprintf(`{"name":%q,"password":"export-password-1","role":%q,"sites":%s}`, name, role, sites)); resp.StatusCode != 201 {
		t.Fatalf("create %s: %d %s", name, resp.StatusCode, out)
	}
	resp, out := send(t, "POST", base+"/api/v1/login", nil, fmt.Sprintf(`{"name":%q,"password":"export-password-1"}`, name))
	if resp.StatusCode != 200 {
		t.Fatalf("login %s: %d %s", name, resp.StatusCode, out)
	}
	for _, c := range resp.Cookies() {
		return map[string]string{"Cookie": c.Name + "=" + c.Value}
	}
	t.Fatalf("login %s: no cookie", name)
	return nil
}

// GET /api/v1/export streams exactly the stored events each filter asks
// for (kind, a from/to window on the event's time, site, the caller's
// scope), as NDJSON or CSV with device, seq, kind, hlc, time and body;
// a bad parameter is a 400 naming it, and only operators and admins of
// the site may export.
func TestExportStreamsTheAskedEvents(t *testing.T) {
	t.Parallel()
	h, err := Start(context.Background(), hubConfig(t.TempDir()), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	waitSubscribed(t, h)
	base, admin := h.HTTPURL(), map[string]string{"Authorization": "Bearer " + h.AdminToken()}
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	type stored struct {
		site, device string
		seq          uint64
		kind         event.Kind
		at           time.Time
	}
	var all []stored
	for _, dev := range []struct{ site, id string }{{"s1", "gw-a"}, {"s2", "gw-b"}, {"s10", "gw-c"}} {
		var evs []event.Event
		for i := range 12 {
			seq := uint64(i + 1)
			at := t0.Add(time.Duration(i) * 24 * time.Hour)
			var body event.Body
			switch i % 3 {
			case 0:
				body = &event.Reading{Sensor: "T1", Type: "temperature", Value: float64(i)}
			case 1:
				body = &event.Access{Door: "B1-main", Result: "granted", Credential: "h:c" + strconv.Itoa(i)}
			default:
				body = &event.Alarm{Sensor: "S" + strconv.Itoa(i), Type: "smoke", Active: true, Building: "B1"}
			}
			ev, err := event.NewEvent("", seq, hlc.FromTime(at), body)
			if err != nil {
				t.Fatal(err)
			}
			evs = append(evs, ev)
			all = append(all, stored{dev.site, dev.id, seq, ev.Kind, at})
		}
		f := dialEdge(t, h.MQTTAddr(), dev.site, dev.id)
		f.publish(wire.Up{Hello: &wire.Hello{Role: "gateway", LastSeq: 12}})
		f.waitAck(0, 1)
		b, err := wire.NewBatch(1, 12, evs, true, hlc.FromTime(t0))
		if err != nil {
			t.Fatal(err)
		}
		f.publish(wire.Up{Batch: b})
		f.waitAck(12, 2)
		f.c.Disconnect(100)
	}
	op1 := login(t, base, admin, "op1", "operator", `["s1"]`)
	viewer := login(t, base, admin, "viewer1", "viewer", `[]`)

	type row struct {
		Site, Device string
		Seq          uint64
		Kind         string
	}
	want := func(keep func(s stored) bool) []row {
		out := []row{}
		for _, s := range all {
			if keep(s) {
				out = append(out, row{s.site, s.device, s.seq, s.kind.String()})
			}
		}
		slices.SortFunc(out, func(a, b row) int {
			return bytes.Compare([]byte(fmt.Sprintf("%s/%s/%08d", a.Site, a.Device, a.Seq)), []byte(fmt.Sprintf("%s/%s/%08d", b.Site, b.Device, b.Seq)))
		})
		return out
	}
	from, to := t0.Add(3*24*time.Hour), t0.Add(7*24*time.Hour)
	in := func(s stored) bool { return !s.at.Before(from) && s.at.Before(to) }
	for _, tc := range []struct {
		name  string
		hdr   map[string]string
		query string
		want  []row
	}{
		{"everything", admin, "", want(func(stored) bool { return true })},
		{"readings", admin, "kind=reading", want(func(s stored) bool { return s.kind == event.KindReading })},
		{"window", admin, "from=" + from.Format(time.RFC3339) + "&to=" + url.QueryEscape(to.In(time.FixedZone("CST", 8*3600)).Format(time.RFC3339)), want(in)},
		{"site", admin, "site=s1", want(func(s stored) bool { return s.site == "s1" })},
		{"all filters, csv", admin, "site=s2&kind=access&from=" + from.Format(time.RFC3339) + "&to=" + to.Format(time.RFC3339) + "&format=csv",
			want(func(s stored) bool { return s.site == "s2" && s.kind == event.KindAccess && in(s) })},
		{"csv", admin, "format=csv", want(func(stored) bool { return true })},
		{"operator's scope", op1, "", want(func(s stored) bool { return s.site == "s1" })},
		{"operator's site", op1, "site=s1&kind=alarm&format=csv", want(func(s stored) bool { return s.site == "s1" && s.kind == event.KindAlarm })},
		{"nothing in the window", admin, "from=2030-01-01T00:00:00Z", []row{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, out := send(t, "GET", base+"/api/v1/export?"+tc.query, tc.hdr, "")
			if resp.StatusCode != 200 {
				t.Fatalf("%d %s", resp.StatusCode, out)
			}
			got := []row{}
			if resp.Header.Get("Content-Type") == "text/csv; charset=utf-8" {
				recs, err := csv.NewReader(bytes.NewReader(out)).ReadAll()
				if err != nil {
					t.Fatal(err)
				}
				if len(recs) == 0 || !slices.Equal(recs[0], []string{"site", "device", "seq", "kind", "hlc", "time", "body"}) {
					t.Fatalf("csv header %v", recs)
				}
				for _, r := range recs[1:] {
					seq, _ := strconv.ParseUint(r[2], 10, 64)
					got = append(got, row{r[0], r[1], seq, r[3]})
					checkRow(t, r[3], r[4], r[5], []byte(r[6]))
				}
			} else {
				if ct := resp.Header.Get("Content-Type"); ct != "application/x-ndjson" {
					t.Fatalf("content type %q", ct)
				}
				sc := bufio.NewScanner(bytes.NewReader(out))
				for sc.Scan() {
					var r struct {
						Site, Device, Kind, Time string
						Seq, HLC                 uint64
						Body                     json.RawMessage
					}
					if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
						t.Fatalf("line %q: %v", sc.Text(), err)
					}
					got = append(got, row{r.Site, r.Device, r.Seq, r.Kind})
					checkRow(t, r.Kind, strconv.FormatUint(r.HLC, 10), r.Time, r.Body)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("exported %d rows %v\nwant %d %v", len(got), got, len(tc.want), tc.want)
			}
		})
	}
	for _, tc := range []struct {
		name, query string
		hdr         map[string]string
		status      int
		field       string
	}{
		{"anonymous", "", nil, 401, ""},
		{"viewer", "", viewer, 403, ""},
		{"another site", "site=s2", op1, 403, "site"},
		{"kind", "kind=teleport", admin, 400, "kind"},
		{"hub kind", "kind=" + event.Kind(64).String(), admin, 400, "kind"},
		{"from", "from=yesterday", admin, 400, "from"},
		{"to", "to=2026-03-01", admin, 400, "to"},
		{"to before from", "from=2026-03-05T00:00:00Z&to=2026-03-01T00:00:00Z", admin, 400, "to"},
		{"format", "format=xml", admin, 400, "format"},
		{"site", "site=" + url.QueryEscape("s 1"), admin, 400, "site"},
		{"unknown", "device=gw-a", admin, 400, "device"},
	} {
		resp, out := send(t, "GET", base+"/api/v1/export?"+tc.query, tc.hdr, "")
		var e struct{ Field string }
		_ = json.Unmarshal(out, &e)
		if resp.StatusCode != tc.status || e.Field != tc.field {
			t.Errorf("%s: %d %s, want %d naming %q", tc.name, resp.StatusCode, out, tc.status, tc.field)
		}
	}
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
}

// checkRow checks an exported row's time, hlc and body agree with its kind.
func checkRow(t *testing.T, kind, hlcText, at string, body []byte) {
	t.Helper()
	n, err := strconv.ParseUint(hlcText, 10, 64)
	if err != nil {
		t.Fatalf("hlc %q", hlcText)
	}
	if got := hlc.Timestamp(n).Time().Format(time.RFC3339Nano); got != at {
		t.Fatalf("time %s, hlc says %s", at, got)
	}
	var b map[string]any
	if err := json.Unmarshal(body, &b); err != nil {
		t.Fatalf("body %s: %v", body, err)
	}
	key := map[string]string{"reading": "sensor", "access": "door", "alarm": "sensor"}[kind]
	if b[key] == nil {
		t.Fatalf("%s body %s has no %s", kind, body, key)
	}
}
