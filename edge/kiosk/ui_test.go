package kiosk

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"linli/edge/api"
	"linli/shared/event"
)

func readWeb(t *testing.T, name string) []byte {
	t.Helper()
	b, err := web.ReadFile("web/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func catalogues(t *testing.T) map[string]map[string]string {
	t.Helper()
	out := map[string]map[string]string{}
	for _, lang := range []string{"zh-CN", "en"} {
		var c map[string]string
		if err := json.Unmarshal(readWeb(t, "i18n/"+lang+".json"), &c); err != nil {
			t.Fatalf("i18n/%s.json: %v", lang, err)
		}
		out[lang] = c
	}
	return out
}

var placeholder = regexp.MustCompile(`\{\w+\}`)

// Both languages say the same things: the same keys, none empty, and the
// same {placeholders} in each string.
func TestCataloguesMatch(t *testing.T) {
	c := catalogues(t)
	zh, en := c["zh-CN"], c["en"]
	for _, k := range slices.Sorted(maps.Keys(zh)) {
		e, ok := en[k]
		if !ok {
			t.Errorf("en lacks %q", k)
			continue
		}
		if strings.TrimSpace(zh[k]) == "" || strings.TrimSpace(e) == "" {
			t.Errorf("%q is empty in a catalogue", k)
		}
		pz, pe := placeholder.FindAllString(zh[k], -1), placeholder.FindAllString(e, -1)
		slices.Sort(pz)
		slices.Sort(pe)
		if !slices.Equal(pz, pe) {
			t.Errorf("%q: placeholders zh-CN %v, en %v", k, pz, pe)
		}
	}
	for k := range en {
		if _, ok := zh[k]; !ok {
			t.Errorf("zh-CN lacks %q", k)
		}
	}
}

// keyPrefixes are the namespaces of catalogue keys; a string literal in
// app.js that starts with one is a key (or, ending in '.', a family of
// keys completed at run time from a vocabulary).
var keyLiteral = regexp.MustCompile(`'((?:act|alarm|alert|app|cat|common|err|home|id|idle|kind|lang|mine|nav|ncat|notices|offline|rate|rep|start|status|sync)\.[a-z_0-9.]*)'`)

// Every string the UI shows comes from the catalogues: each key app.js and
// index.html use is in them, each family of keys covers its whole
// vocabulary, and no Chinese text is written into the code.
func TestEveryStringIsCatalogued(t *testing.T) {
	zh := catalogues(t)["zh-CN"]
	js := string(readWeb(t, "app.js"))
	html := string(readWeb(t, "index.html"))
	families := map[string][]string{
		"cat.":         event.Categories,
		"status.":      event.ReportStatuses,
		"kind.":        event.ActivityKinds,
		"ncat.":        event.NoticeCategories,
		"act.status.":  {"none", event.StatusConfirmed, event.StatusWaitlisted, event.StatusRecorded, "left"},
		"act.result.":  {event.StatusConfirmed, event.StatusWaitlisted, event.StatusRecorded, "out"},
		"mine.rel.":    {"filed", "voted", "anon"},
		"step.":        {"created", "patched", "reopened", "merged_into"},
		"rate.kind.":   {"report", "activity"},
		"rate.s":       {"1", "2", "3", "4", "5"},
		"alert.kind.":  event.AlarmKinds,
		"alert.title.": {"fire", "water", "door"},
		"alert.do.":    {"fire.1", "fire.2", "fire.3", "water.1", "water.2", "water.3", "door.1", "door.2"},
		"err.field.":   {"resident", "activity", "action", "category", "title", "description", "building", "unit", "score", "comment", "target", "report", "body", "id"},
	}
	used := map[string]bool{}
	for _, m := range keyLiteral.FindAllStringSubmatch(js, -1) {
		used[m[1]] = true
	}
	for _, m := range regexp.MustCompile(`data-i18n="([^"]+)"`).FindAllStringSubmatch(html, -1) {
		used[m[1]] = true
	}
	if len(used) < 100 {
		t.Fatalf("found only %d keys in app.js and index.html: the pattern no longer matches the code", len(used))
	}
	for k := range used {
		if strings.HasSuffix(k, ".") || k == "rate.s" {
			vocab, ok := families[k]
			if !ok {
				t.Errorf("app.js builds keys from %q, a family this test does not know", k)
			}
			for _, v := range vocab {
				if _, ok := zh[k+v]; !ok {
					t.Errorf("catalogue lacks %q", k+v)
				}
			}
			continue
		}
		if _, ok := zh[k]; !ok {
			t.Errorf("app.js or index.html uses %q, which is not in the catalogue", k)
		}
	}
	// The fields the UI maps to friendly text are the fields the API names.
	m := regexp.MustCompile(`const FIELDS = \[([^\]]*)\]`).FindStringSubmatch(js)
	if m == nil || !strings.Contains(m[1], "'title'") {
		t.Fatal("app.js has no FIELDS list")
	}
	// And its categories are the contract's.
	m = regexp.MustCompile(`const CATEGORIES = \[([^\]]*)\]`).FindStringSubmatch(js)
	if m == nil || strings.ReplaceAll(strings.ReplaceAll(m[1], "'", ""), " ", "") != strings.Join(event.Categories, ",") {
		t.Errorf("app.js CATEGORIES %q, want %v", m, event.Categories)
	}
	for name, src := range map[string]string{"app.js": js, "index.html": strings.Replace(html, `aria-hidden="true">邻<`, "", 1)} {
		for i, r := range src {
			if unicode.Is(unicode.Han, r) {
				t.Errorf("%s holds Chinese text at byte %d (%q): strings belong in the catalogues", name, i, src[max(0, i-20):min(len(src), i+20)])
				break
			}
		}
	}
}

func newUIServer(t *testing.T, role string) *httptest.Server {
	t.Helper()
	ui, err := NewUI()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(serve(&api.API{Role: role, Log: nopLog{}, UI: ui}, &Handlers{}))
	t.Cleanup(srv.Close)
	return srv
}

// nopLog is a Log that is never written in these tests.
type nopLog struct{}

func (nopLog) Append(ctx context.Context, body event.Body) (event.Event, error) {
	return event.Event{}, nil
}
func (nopLog) Cursors() (last, acked, pending uint64) { return 0, 0, 0 }

func get(t *testing.T, url string, header ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	// The default transport would ask for gzip itself and hide the answer.
	tr := &http.Transport{DisableCompression: true}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		resp.Body.Close()
		tr.CloseIdleConnections() // its connection's goroutines end with it
	})
	return resp
}

func TestUIServesEmbeddedFiles(t *testing.T) {
	srv := newUIServer(t, api.RoleKiosk)
	index := readWeb(t, "index.html")

	resp := get(t, srv.URL+"/")
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !bytes.Equal(body, index) {
		t.Fatalf("GET / = %d, %d bytes; want index.html", resp.StatusCode, len(body))
	}
	for h, want := range map[string]string{
		"Content-Type":            "text/html; charset=utf-8",
		"Content-Security-Policy": "default-src 'none'; script-src 'self'",
		"X-Content-Type-Options":  "nosniff",
		"Cache-Control":           "no-cache",
	} {
		if got := resp.Header.Get(h); !strings.HasPrefix(got, want) {
			t.Errorf("%s: %q, want %q…", h, got, want)
		}
	}

	// gzip for browsers that take it, the same bytes inside.
	resp = get(t, srv.URL+"/app.js", "Accept-Encoding", "gzip, deflate, br")
	if resp.Header.Get("Content-Encoding") != "gzip" || resp.Header.Get("Content-Type") != "text/javascript; charset=utf-8" {
		t.Fatalf("app.js headers %v", resp.Header)
	}
	zr, err := gzip.NewReader(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	unzipped, err := io.ReadAll(zr)
	if err != nil || !bytes.Equal(unzipped, readWeb(t, "app.js")) {
		t.Fatalf("gzipped app.js differs from the file (%v)", err)
	}
	if n, _ := strconv.Atoi(resp.Header.Get("Content-Length")); n == 0 || n >= len(unzipped) {
		t.Errorf("gzipped Content-Length %d for %d bytes", n, len(unzipped))
	}

	// Revalidation answers 304 while the file is the same.
	etag := resp.Header.Get("ETag")
	if resp := get(t, srv.URL+"/app.js", "If-None-Match", etag); resp.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match %s: %d, want 304", etag, resp.StatusCode)
	}
	if resp := get(t, srv.URL+"/i18n/en.json"); resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json; charset=utf-8" {
		t.Errorf("en.json: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, p := range []string{"/nope.html", "/web/index.html", "/i18n/", "/go.mod", "/ui.go"} {
		if resp := get(t, srv.URL+p); resp.StatusCode != 404 {
			t.Errorf("GET %s: %d, want 404", p, resp.StatusCode)
		}
	}
	resp = get(t, srv.URL+"/api/v1/nope")
	var e struct{ Error string }
	if err := json.NewDecoder(resp.Body).Decode(&e); resp.StatusCode != 404 || err != nil || e.Error == "" {
		t.Errorf("unknown API path: %d %v %+v, want a JSON 404", resp.StatusCode, err, e)
	}
	// Writes to / are not a thing.
	r, err := http.Post(srv.URL+"/", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /: %d, want 405", r.StatusCode)
	}

	// Gateways serve no resident UI.
	if resp := get(t, newUIServer(t, api.RoleGateway).URL+"/"); resp.StatusCode != 404 {
		t.Errorf("gateway GET /: %d, want 404", resp.StatusCode)
	}
}

// The start screen stays small on the wire: the files a browser loads for it
// gzipped, well under the 100 KB budget docs/kiosk.md states.
func TestStartScreenWeight(t *testing.T) {
	ui, err := NewUI()
	if err != nil {
		t.Fatal(err)
	}
	n, err := ui.Size("/index.html", "/app.css", "/app.js", "/i18n/zh-CN.json")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("start screen files, gzipped: %d bytes", n)
	if n > 40<<10 {
		t.Errorf("start screen files take %d bytes gzipped; the budget is 40 KiB (100 KB with API answers and headers)", n)
	}
}

// The page names its own icon, served from the kiosk: the browser asks for
// nothing that is not there and loads nothing from outside.
func TestUIFavicon(t *testing.T) {
	srv := newUIServer(t, api.RoleKiosk)
	m := regexp.MustCompile(`<link rel="icon" href="([^"]+)" type="image/svg\+xml">`).FindSubmatch(readWeb(t, "index.html"))
	if m == nil {
		t.Fatal("index.html links no SVG icon")
	}
	resp := get(t, srv.URL+"/"+string(m[1]))
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/svg+xml" || !bytes.Contains(body, []byte("<svg")) {
		t.Fatalf("GET /%s: %d %q, %d bytes", m[1], resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
	}
}
