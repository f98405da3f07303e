package gateway

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"linli/edge/api"
	"linli/edge/outbox"
	"linli/shared/accesslist"
	"linli/shared/test/edgetest"
)

var testCardKey = bytes.Repeat([]byte{0x42}, accesslist.KeySize)

// newWritesServer is a gateway's edge API with its writes, on a real
// outbox, hashing cards with cardKey.
func newWritesServer(t *testing.T, cardKey func() []byte) (*httptest.Server, *outbox.Log) {
	t.Helper()
	ob, _, err := edgetest.OpenLog(t, t.TempDir(), outbox.Options{Device: "edge-1", RetentionInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	edge := &api.API{Role: api.RoleGateway, Log: ob}
	(&Writes{API: edge, CardKey: cardKey}).Mount()
	srv := httptest.NewServer(edge.Handler())
	t.Cleanup(func() {
		srv.Close()
		if err := ob.Close(); err != nil {
			t.Error(err)
		}
	})
	return srv, ob
}

// A card posted to a gateway is stored only as its keyed pseudonym — the
// one the reader path gives the same card — and the answer says which;
// without a key it is refused, never stored in clear.
func TestAccessCredentialStoredOnlyAsPseudonym(t *testing.T) {
	srv, ob := newWritesServer(t, func() []byte { return testCardKey })
	wiegand := accesslist.Pseudonym(accesslist.Hash(testCardKey, "26:123:45678"))
	tests := []struct {
		credential, want string
	}{
		{"26:123:45678", wiegand},
		{"26:0123:045678", wiegand}, // the same card, not in canonical form
		{"C42", accesslist.Pseudonym(accesslist.Hash(testCardKey, "C42"))},
		{"h:00112233aabbccdd", "h:00112233aabbccdd"}, // already a pseudonym: kept
	}
	for _, tt := range tests {
		code, out := edgetest.PostJSON(t, srv.URL+"/api/v1/access", `{"door":"B3-main","credential":"`+tt.credential+`","result":"granted"}`)
		if code != http.StatusCreated || out["credential"] != tt.want {
			t.Fatalf("credential %q: %d %v, want 201 with %s", tt.credential, code, out, tt.want)
		}
	}
	evs, err := ob.Read(0, 100, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	for i, ev := range evs {
		if strings.Contains(string(ev.Body), "45678") || strings.Contains(string(ev.Body), "C42") {
			t.Fatalf("event %d holds a card in clear: %q", i, ev.Body)
		}
		b, err := ev.Decode()
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(b); !strings.Contains(got, tests[i].want) {
			t.Fatalf("event %d is %s, want credential %s", i, got, tests[i].want)
		}
	}

	for _, tt := range []struct{ name, credential, msg string }{
		{"pseudonym too short", "h:0123", "lowercase hex"},
		{"pseudonym in capitals", "h:0123456789ABCDEF", "lowercase hex"},
		{"pseudonym not hex", "h:0123456789abcdeg", "lowercase hex"},
		{"Wiegand card that does not fit", "26:256:1", "does not fit"},
		{"odd characters", "C 42", "only letters"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, out := edgetest.PostJSON(t, srv.URL+"/api/v1/access", `{"door":"B3-main","credential":"`+tt.credential+`","result":"granted"}`)
			if code != http.StatusBadRequest || out["field"] != "credential" || !strings.Contains(fmt.Sprint(out["error"]), tt.msg) {
				t.Fatalf("%d %v, want 400 naming credential and saying %q", code, out, tt.msg)
			}
		})
	}

	// No list yet: no key to hash with, so the event is kept without the card.
	srv, ob = newWritesServer(t, func() []byte { return nil })
	code, out := edgetest.PostJSON(t, srv.URL+"/api/v1/access", `{"door":"B3-main","credential":"26:123:45678","result":"granted"}`)
	if code != http.StatusCreated || out["credential"] != nil {
		t.Fatalf("without a key: %d %v, want 201 without a credential", code, out)
	}
	if got := ob.Stats().LastSeq; got != 1 {
		t.Fatalf("without a key: %d events stored, want 1", got)
	}
	if evs, err := ob.Read(0, 10, 1<<20); err != nil || len(evs) != 1 || bytes.Contains(evs[0].Body, []byte("45678")) {
		t.Fatalf("without a key: %v %v, want one event without the card", evs, err)
	}
	code, out = edgetest.PostJSON(t, srv.URL+"/api/v1/access", `{"door":"B3-main","credential":"h:00112233aabbccdd","result":"denied"}`)
	if code != http.StatusCreated || out["credential"] != "h:00112233aabbccdd" {
		t.Fatalf("a pseudonym without a key: %d %v, want 201", code, out)
	}
}
