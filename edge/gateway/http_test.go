package gateway

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"linli/edge/api"
	"linli/edge/outbox"
	"linli/shared/accesslist"
	"linli/shared/event"
	"linli/shared/hlc"
	"linli/shared/test/edgetest"
	"linli/shared/wire"
)

// A card posted to the gateway's HTTP API is stored and sent only as the
// pseudonym its reader gives the same card, so the hub matches both paths
// to one card; before any list (no key) the event is kept without the card.
func TestPostedCardStoredAsReaderPseudonym(t *testing.T) {
	ob, db, err := edgetest.OpenLog(t, t.TempDir(), outbox.Options{Device: "gw-1", RetentionInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	r := startRig(t, ob, db)
	defer r.stop()
	r.waitListening(t)
	edge := &api.API{Role: api.RoleGateway, Log: ob, Sync: r.up}
	(&Writes{API: edge, CardKey: r.g.CardKey}).Mount()
	srv := httptest.NewServer(r.g.Routes(edge.Handler()))
	defer srv.Close()
	post := func(body string) (int, map[string]any) {
		t.Helper()
		resp, err := http.Post(srv.URL+"/api/v1/access", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, out
	}

	if code, out := post(`{"door":"D1","credential":"26:123:45678","result":"granted"}`); code != http.StatusCreated || out["credential"] != nil {
		t.Fatalf("a card before any list: %d %v, want 201 kept without the card", code, out)
	}
	r.await(t, "access D1 granted")

	key := bytes.Repeat([]byte{9}, accesslist.KeySize)
	list := accesslist.List{Site: "S1", Building: "B3", Issued: hlc.FromTime(time.Now()), Key: key,
		Doors: []accesslist.Door{{Name: "D1", Cards: [][]byte{accesslist.Hash(key, "26:123:45678")}}}}
	body, err := event.Marshal(list)
	if err != nil {
		t.Fatal(err)
	}
	r.rep.apply(wire.Change{Entity: wire.EntityAccessList, ID: "S1:B3", Body: body})

	// The same card at the reader: granted, under its pseudonym.
	r.swipe(t, "26:123:45678")
	r.await(t, "access D1 granted")
	reader := r.door(t, "D1").Last.Credential
	if accesslist.ValidPseudonym(reader) != nil {
		t.Fatalf("reader decision names %q", reader)
	}
	for _, cred := range []string{"26:123:45678", "26:0123:45678"} {
		code, out := post(`{"door":"D1","credential":"` + cred + `","result":"granted"}`)
		if code != http.StatusCreated || out["credential"] != reader {
			t.Fatalf("POST %s: %d %v, want 201 with the reader's pseudonym %s", cred, code, out, reader)
		}
	}
	if code, out := post(`{"door":"D1","credential":"C42","result":"denied"}`); code != http.StatusCreated || accesslist.ValidPseudonym(out["credential"].(string)) != nil {
		t.Fatalf("POST C42: %d %v, want 201 under a pseudonym", code, out)
	}
	r.await(t, "access D1 granted", "access D1 granted", "access D1 denied")

	evs, err := ob.Read(0, 100, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, ev := range evs {
		if raw := string(ev.Body); strings.Contains(raw, "45678") || strings.Contains(raw, "C42") {
			t.Fatalf("event %d holds a card in clear: %q", ev.Seq, raw)
		}
		if a, ok := decode(ev).(*event.Access); ok {
			names = append(names, a.Credential)
		}
	}
	if len(names) != 5 || names[0] != "" || names[1] != reader || names[2] != reader || names[3] != reader || names[4] == reader {
		t.Fatalf("credentials stored %q, want none before the list, the reader's %s three times, then C42's own", names, reader)
	}
}
