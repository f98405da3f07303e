package api_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"linli/edge/api"
	"linli/shared/accesslist"
	"linli/shared/test/edgetest"
)

var testCardKey = bytes.Repeat([]byte{0x42}, accesslist.KeySize)

// writePaths are every JSON write of the edge API.
var writePaths = []string{"/api/v1/checkins", "/api/v1/reports", "/api/v1/reports/k.1/votes",
	"/api/v1/ratings", "/api/v1/access", "/api/v1/readings"}

// Input that encoding/json would take silently — a key twice, bytes that
// are not UTF-8, a lone surrogate, a fraction for a whole number — and
// text that would disguise itself on a public screen is refused with a 400
// naming the field, and nothing is stored.
func TestQuirkyInputRefusedAndNothingStored(t *testing.T) {
	srv, ob := newServer(t, api.RoleGateway)
	report := func(title, description string) string {
		return `{"category":"noise","title":"` + title + `","description":"` + description + `","building":"B1"}`
	}
	tests := []struct {
		name, path, body, field, msg string
	}{
		{"checkin key twice", "/api/v1/checkins", `{"resident":"R1","activity":"A1","resident":"R2"}`, "resident", "more than once"},
		{"checkin key twice in other case", "/api/v1/checkins", `{"resident":"R1","activity":"A1","Resident":"R2"}`, "Resident", "more than once"},
		{"checkin key twice by long s", "/api/v1/checkins", `{"resident":"R1","activity":"A1","re\u017fident":"R2"}`, "reſident", "more than once"},
		{"checkin key twice by escape", "/api/v1/checkins", `{"resident":"R1","activity":"A1","\u0072esident":"R2"}`, "resident", "more than once"},
		{"report key twice", "/api/v1/reports", `{"category":"noise","title":"ok","building":"B1","title":"evil"}`, "title", "more than once"},
		{"vote key twice", "/api/v1/reports/k.1/votes", `{"resident":"R1","resident":"R2"}`, "resident", "more than once"},
		{"rating key twice", "/api/v1/ratings", `{"resident":"R1","target":"A1","score":5,"score":1}`, "score", "more than once"},
		{"access key twice", "/api/v1/access", `{"door":"B3-main","result":"granted","result":"denied"}`, "result", "more than once"},
		{"reading key twice", "/api/v1/readings", `{"sensor":"s1","kind":"smoke","value":0,"value":1}`, "value", "more than once"},
		{"reading key twice deep inside", "/api/v1/readings", `{"sensor":"s1","kind":"smoke","value":{"a":[{"b":1,"b":2}]}}`, "value", "value.a[0].b"},
		{"title not UTF-8", "/api/v1/reports", report("bad \xff byte", ""), "title", "not valid UTF-8"},
		{"description not UTF-8", "/api/v1/reports", report("ok", "\xe6\xb5"), "description", "not valid UTF-8"},
		{"comment not UTF-8", "/api/v1/ratings", "{\"resident\":\"R1\",\"target\":\"A1\",\"score\":4,\"comment\":\"\xc0\xaf\"}", "comment", "not valid UTF-8"},
		{"resident not UTF-8", "/api/v1/checkins", "{\"resident\":\"R\xff\",\"activity\":\"A1\"}", "resident", "not valid UTF-8"},
		{"field name not UTF-8", "/api/v1/checkins", "{\"resident\":\"R1\",\"activity\":\"A1\",\"\xff\":1}", "body", "field name is not valid UTF-8"},
		{"title lone surrogate", "/api/v1/reports", report(`a\ud800b`, ""), "title", "surrogate"},
		{"title lone low surrogate", "/api/v1/reports", report(`\udc00`, ""), "title", "surrogate"},
		{"title right-to-left override", "/api/v1/reports", report("cheap \u202egnp.exe", ""), "title", "bidirectional"},
		{"title right-to-left override escaped", "/api/v1/reports", report(`cheap \u202Egnp.exe`, ""), "title", "bidirectional"},
		{"title embedding", "/api/v1/reports", report("x\u202ay", ""), "title", "U+202A"},
		{"title isolate", "/api/v1/reports", report("x\u2066y", ""), "title", "U+2066"},
		{"title pop isolate", "/api/v1/reports", report("x\u2069y", ""), "title", "U+2069"},
		{"title right-to-left mark", "/api/v1/reports", report("x\u200fy", ""), "title", "U+200F"},
		{"description override", "/api/v1/reports", report("ok", "line\\n\u202dx"), "description", "U+202D"},
		{"comment override", "/api/v1/ratings", `{"resident":"R1","target":"A1","score":4,"comment":"\u202e"}`, "comment", "bidirectional"},
		{"title bell", "/api/v1/reports", report(`ring\u0007`, ""), "title", "control character (U+0007)"},
		{"title C1 control", "/api/v1/reports", report("x\u0085y", ""), "title", "U+0085"},
		{"title delete", "/api/v1/reports", report("x\u007fy", ""), "title", "U+007F"},
		{"title newline", "/api/v1/reports", report(`two\nlines`, ""), "title", "one line"},
		{"title tab", "/api/v1/reports", report(`a\tb`, ""), "title", "U+0009"},
		{"title line separator", "/api/v1/reports", report("a\u2028b", ""), "title", "one line"},
		{"description carriage return", "/api/v1/reports", report("ok", `a\r\nb`), "description", "U+000D"},
		{"description escape", "/api/v1/reports", report("ok", `\u001b[2J`), "description", "U+001B"},
		{"score fraction", "/api/v1/ratings", `{"resident":"R1","target":"A1","score":3.5}`, "score", "score: must be a whole number from 1 to 5"},
		{"score exponent", "/api/v1/ratings", `{"resident":"R1","target":"A1","score":4e-1}`, "score", "score: must be a whole number from 1 to 5"},
		{"score missing", "/api/v1/ratings", `{"resident":"R1","target":"A1"}`, "score", "score: must be a whole number from 1 to 5"},
		{"score as text", "/api/v1/ratings", `{"resident":"R1","target":"A1","score":"5"}`, "score", "must be of type number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := ob.Stats().LastSeq
			code, out := edgetest.PostJSON(t, srv.URL+tt.path, tt.body)
			if code != http.StatusBadRequest || out["field"] != tt.field {
				t.Fatalf("status %d %v, want 400 naming %q", code, out, tt.field)
			}
			if msg, _ := out["error"].(string); !strings.Contains(msg, tt.msg) {
				t.Fatalf("error %q, want it to say %q", msg, tt.msg)
			}
			if after := ob.Stats().LastSeq; after != before {
				t.Fatalf("the outbox grew from %d to %d", before, after)
			}
		})
	}
}

// The rules stop at what is wrong: ordinary text, a multi-line
// description, emoji joined by ZWJ, a proper surrogate pair and whole
// scores written as 4.0 are taken.
func TestScreenTextThatIsFineIsTaken(t *testing.T) {
	srv, ob := newServer(t, api.RoleKiosk)
	for _, body := range []string{
		`{"category":"noise","title":"楼道 noise, 3 楼","description":"line 1\nline 2","building":"B1"}`,
		`{"category":"other","title":"👨‍👩‍👧 family \ud83d\ude00","description":"עברית and العربية mixed","building":"B1"}`,
		`{"resident":"R1","target":"A1","score":4.0,"comment":"好\n很好"}`,
	} {
		path := "/api/v1/reports"
		if strings.Contains(body, "score") {
			path = "/api/v1/ratings"
		}
		if code, out := edgetest.PostJSON(t, srv.URL+path, body); code != http.StatusCreated {
			t.Fatalf("POST %s %s: %d %v", path, body, code, out)
		}
	}
	if got := ob.Stats().LastSeq; got != 3 {
		t.Fatalf("%d events stored, want 3", got)
	}
}

// A client that declares a body over the 64 KiB limit and waits for
// "100 Continue" gets a 400 with the JSON error at once and never a 100:
// nothing is read, nothing stored. Checked on the wire, as a client sees it.
func TestDeclaredOversizeAnswered400WithoutContinue(t *testing.T) {
	srv, ob := newServer(t, api.RoleGateway)
	addr := strings.TrimPrefix(srv.URL, "http://")
	for _, path := range writePaths {
		t.Run(path, func(t *testing.T) {
			conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n",
				path, addr, 10<<20)
			br := bufio.NewReader(conn)
			status, err := textproto.NewReader(br).ReadLine()
			if err != nil {
				t.Fatalf("no answer before the body: %v", err)
			}
			if status != "HTTP/1.1 400 Bad Request" {
				t.Fatalf("first answer %q, want 400 (and no 100 Continue)", status)
			}
			resp, err := http.ReadResponse(bufio.NewReader(io.MultiReader(strings.NewReader(status+"\r\n"), br)), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var out map[string]any
			if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
				t.Fatalf("400 without a JSON body: %v", err)
			}
			if out["field"] != "body" || !strings.Contains(fmt.Sprint(out["error"]), "64 KiB") {
				t.Fatalf("answer %v, want the body named and the limit", out)
			}
		})
	}
	if ob.Stats().LastSeq != 0 {
		t.Fatal("stored something")
	}
}

// A body over the limit is 400 however it comes: declared and sent
// (the Go client, no Expect), or chunked with no length declared.
func TestOversizeBodyAnswered400(t *testing.T) {
	srv, ob := newServer(t, api.RoleKiosk)
	big := `{"resident":"R1","activity":"A1","action":"in"` + strings.Repeat(" ", 70<<10) + `}`
	for _, chunked := range []bool{false, true} {
		var body io.Reader = strings.NewReader(big)
		if chunked {
			body = io.MultiReader(body) // hides the length: sent chunked
		}
		resp, err := http.Post(srv.URL+"/api/v1/checkins", "application/json", body)
		if err != nil {
			t.Fatal(err)
		}
		var out map[string]any
		err = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusBadRequest || out["field"] != "body" {
			t.Fatalf("chunked %v: %d %v %v, want 400 naming the body", chunked, resp.StatusCode, out, err)
		}
	}
	if ob.Stats().LastSeq != 0 {
		t.Fatal("stored something")
	}
}
