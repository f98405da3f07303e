package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"linli/shared/event"
	"linli/shared/test/poll"
	"linli/shared/test/testkit"
)

// Two hub workers on one PostgreSQL and one Mosquitto share four sites:
// each site has one owner; the API of either worker shows every site; a
// write of a site at the worker that does not hold it is refused with 503
// naming the owner. One worker is killed with SIGKILL while the edges of
// all four sites stream: the other holds every site within 10 s, every
// answered event is stored exactly once, and no seat decision is taken
// twice (no two grants of one activity and kiosk with the same seats).
func TestWorkersShareSitesAndFailOver(t *testing.T) {
	t.Parallel()
	url := testkit.StartPostgres(t)
	mq, _ := testkit.Mosquitto(t)
	dir := t.TempDir()
	// The workers of a district sign as one hub, with one key: edges
	// enrolled through either trust both.
	w1 := startHub(t, filepath.Join(dir, "w1"), "", mq, "--store", url, "--lease", "on", "--district", "d1")
	key, err := os.ReadFile(filepath.Join(w1.Data, "hub.key"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "w2"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "w2", "hub.key"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	w2 := startHub(t, filepath.Join(dir, "w2"), "", mq, "--store", url, "--lease", "on", "--district", "d1")
	workers := map[string]*hubProc{"hub-w1": w1, "hub-w2": w2}

	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	owners := func() map[string]string {
		rows, err := conn.Query(ctx, "SELECT site, owner FROM site_leases WHERE expires_at > now()")
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for rows.Next() {
			var site, owner string
			if err := rows.Scan(&site, &owner); err != nil {
				t.Fatal(err)
			}
			out[site] = owner
		}
		return out
	}

	// Edges enrolled through either worker: the registry is shared.
	sites := []string{"s1", "s2", "s3", "s4"}
	var edges []*edgeProc
	for i, site := range sites {
		via := w1
		if i%2 == 1 {
			via = w2
		}
		edges = append(edges, startEnrolledEdge(t, via, "kiosk-"+site, site, "kiosk",
			"--batch-events", "50", "--window", "2"))
	}
	poll.Eventually(t, 30*time.Second, func() (bool, string) {
		o := owners()
		held := map[string]int{}
		for _, w := range o {
			held[w]++
		}
		return len(o) == 4 && held["hub-w1"] == 2 && held["hub-w2"] == 2, fmt.Sprintf("leases %v", o)
	})
	own := owners()

	// An activity per site, created at its owner; the other worker
	// refuses it with 503, Retry-After and the owner's name, and then
	// shows the owner's activity.
	start := time.Now().Add(48 * time.Hour).Format(time.RFC3339)
	for _, site := range sites {
		owner := workers[own[site]]
		other := w1
		if owner == w1 {
			other = w2
		}
		act := map[string]any{"id": "A-" + site, "title": "太极拳", "kind": "activity", "site": site, "start": start, "capacity": 40}
		var refused struct{ Owner, Site, Code string }
		code, hdr := doHeader(t, other, "POST", "/api/v1/activities", act, &refused)
		if code != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" || refused.Owner != own[site] || refused.Site != site {
			t.Fatalf("activity of %s at the worker not holding it: %d, Retry-After %q, %+v; want 503 naming %s",
				site, code, hdr.Get("Retry-After"), refused, own[site])
		}
		if code := owner.do(t, "POST", "/api/v1/activities", act, nil); code != 201 {
			t.Fatalf("activity of %s at its owner: %d", site, code)
		}
	}
	for _, h := range []*hubProc{w1, w2} {
		for _, site := range sites {
			poll.Eventually(t, 10*time.Second, func() (bool, string) {
				code := h.do(t, "GET", "/api/v1/activities/A-"+site, nil, nil)
				return code == 200, fmt.Sprintf("%s shows A-%s: %d", h.Data, site, code)
			})
		}
	}

	// Every site streams; the worker holding s1 is killed mid-stream.
	ledger := testkit.NewLedger()
	var wg sync.WaitGroup
	for _, e := range edges {
		wg.Go(func() {
			load(ctx, t, e, ledger, 1500, 4, false)
			for i := range 20 { // check-ins the kiosks confirm from their shares of seats
				var c created
				testkit.Do(ctx, "POST", e.URL+"/api/v1/checkins", "", map[string]string{
					"resident": fmt.Sprintf("S%s%d", strings.ReplaceAll(e.ID, "-", ""), i), "activity": "A-" + e.ID[len("kiosk-"):]}, &c)
			}
		})
	}
	poll.Eventually(t, 60*time.Second, func() (bool, string) {
		s := edges[0].sync(t)
		return s.AckedSeq > 200, fmt.Sprintf("sync %+v", s)
	})
	victim := own["s1"]
	survivorID := "hub-w1"
	if victim == survivorID {
		survivorID = "hub-w2"
	}
	survivor := workers[survivorID]
	workers[victim].Kill()
	killed := time.Now()
	poll.Eventually(t, 15*time.Second, func() (bool, string) {
		o := owners()
		for _, site := range sites {
			if o[site] != survivorID {
				return false, fmt.Sprintf("leases %v", o)
			}
		}
		return true, ""
	})
	took := time.Since(killed)
	t.Logf("%s's sites held by %s %s after SIGKILL", victim, survivorID, took.Round(100*time.Millisecond))
	if took > 10*time.Second {
		t.Fatalf("sites moved %s after the kill, want within 10 s", took)
	}
	wg.Wait()
	for _, e := range edges {
		drained(t, e, 90*time.Second)
		verify(t, survivor, e, ledger)
	}

	// Each event once in the table, and no grant taken twice.
	var rows, keys int
	if err := conn.QueryRow(ctx, "SELECT count(*), count(DISTINCT (site, device, seq)) FROM events").Scan(&rows, &keys); err != nil {
		t.Fatal(err)
	}
	if rows != keys {
		t.Fatalf("events table: %d rows for %d keys", rows, keys)
	}
	grants := map[string]int{}
	frows, err := conn.Query(ctx, "SELECT key, value FROM hub_kv WHERE key >= 'f/'::bytea AND key < 'f0'::bytea")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for frows.Next() {
		var key, val []byte
		if err := frows.Scan(&key, &val); err != nil {
			t.Fatal(err)
		}
		var sf struct {
			Site  string `cbor:"1,keyasint"`
			Event []byte `cbor:"2,keyasint"`
		}
		if !strings.Contains(string(key), "/hub-w") || event.UnmarshalOwn(val, &sf) != nil || sf.Event == nil {
			continue // an edge's fact
		}
		ev, err := event.DecodeEvent(sf.Event)
		if err != nil {
			t.Fatalf("decision %q: %v", key, err)
		}
		body, err := ev.Decode()
		if err != nil {
			t.Fatalf("decision %q: %v", key, err)
		}
		if g, ok := body.(*event.Grant); ok {
			n++
			grants[fmt.Sprintf("%s/%s/%d", g.Activity, g.Kiosk, g.Seats)]++
		}
	}
	if err := frows.Err(); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("no seat grant was decided")
	}
	for g, c := range grants {
		if c > 1 {
			t.Errorf("grant %s decided %d times", g, c)
		}
	}
	t.Logf("%d grants, each decided once", n)
}

// doHeader is hubProc.do with the answer's header.
func doHeader(t *testing.T, h *hubProc, method, path string, body, out any) (int, http.Header) {
	t.Helper()
	data, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(method, h.URL+path, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+h.token(t))
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatalf("%s %s: %d, answer not JSON: %v", method, path, resp.StatusCode, err)
	}
	return resp.StatusCode, resp.Header
}
