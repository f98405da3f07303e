package web

import (
	"bytes"
	"compress/gzip"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func TestDashboardServedWithCSPAndNothingFromOutside(t *testing.T) {
	mux := http.NewServeMux()
	Mount(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	for _, path := range []string{"/", "/static/app.js", "/static/app.css", "/static/i18n/zh-CN.json", "/static/i18n/en.json"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 || len(body) == 0 {
			t.Fatalf("GET %s: %d, %d bytes", path, resp.StatusCode, len(body))
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") {
			t.Fatalf("GET %s: CSP %q", path, csp)
		}
	}
	// No CDN, no font service: the only absolute URL is the SVG namespace.
	url := regexp.MustCompile(`https?://[^\s'"` + "`" + `)]+`)
	err := fs.WalkDir(Assets, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(Assets, path)
		if err != nil {
			return err
		}
		for _, u := range url.FindAllString(string(data), -1) {
			if u != "http://www.w3.org/2000/svg" {
				t.Errorf("%s loads %s from outside the hub", path, u)
			}
		}
		if strings.HasSuffix(path, ".html") && regexp.MustCompile(`<script>|\son[a-z]+=`).Match(data) {
			t.Errorf("%s has inline script, which the CSP refuses", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(srv.URL + "/nope")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Fatalf("GET /nope: %d, want 404 (only / is the page)", resp.StatusCode)
	}
}

func TestCataloguesHaveTheSameKeys(t *testing.T) {
	read := func(name string) map[string]bool {
		data, err := fs.ReadFile(Assets, "i18n/"+name+".json")
		if err != nil {
			t.Fatal(err)
		}
		keys := map[string]bool{}
		for _, m := range regexp.MustCompile(`(?m)^\s*"([^"]+)":`).FindAllStringSubmatch(string(data), -1) {
			keys[m[1]] = true
		}
		return keys
	}
	zh, en := read("zh-CN"), read("en")
	if len(zh) < 100 {
		t.Fatalf("zh-CN has %d keys", len(zh))
	}
	for k := range zh {
		if !en[k] {
			t.Errorf("en lacks %s", k)
		}
	}
	for k := range en {
		if !zh[k] {
			t.Errorf("zh-CN lacks %s", k)
		}
	}
}

// Every file is sent gzipped to a browser that accepts it and as is to one
// that does not, each form with its own ETag that a revalidation answers
// 304 to, never cached without asking (no-cache) and with Vary so no cache
// hands one form to the other.
func TestAssetsCompressedWithETags(t *testing.T) {
	mux := http.NewServeMux()
	Mount(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	get := func(path string, hdr map[string]string) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequest("GET", srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		// Set explicitly, the header stops Go's client from decoding gzip
		// itself, so the test sees the bytes as sent.
		req.Header.Set("Accept-Encoding", "identity")
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, body
	}
	for _, c := range []struct{ path, file, ctype string }{
		{"/", "index.html", "text/html; charset=utf-8"},
		{"/static/app.js", "app.js", "text/javascript; charset=utf-8"},
		{"/static/app.css", "app.css", "text/css; charset=utf-8"},
		{"/static/i18n/en.json", "i18n/en.json", "application/json; charset=utf-8"},
		{"/static/i18n/zh-CN.json", "i18n/zh-CN.json", "application/json; charset=utf-8"},
	} {
		want, err := fs.ReadFile(Assets, c.file)
		if err != nil {
			t.Fatal(err)
		}
		for _, accept := range []string{"gzip, deflate, br, zstd", "gzip;q=0, identity"} {
			resp, body := get(c.path, map[string]string{"Accept-Encoding": accept})
			h := resp.Header
			zipped := h.Get("Content-Encoding") == "gzip"
			if zipped != !strings.Contains(accept, "q=0") {
				t.Errorf("GET %s with Accept-Encoding %q: Content-Encoding %q", c.path, accept, h.Get("Content-Encoding"))
			}
			if zipped {
				zr, err := gzip.NewReader(bytes.NewReader(body))
				if err != nil {
					t.Fatalf("GET %s: %v", c.path, err)
				}
				if body, err = io.ReadAll(zr); err != nil {
					t.Fatalf("GET %s: %v", c.path, err)
				}
			}
			if resp.StatusCode != 200 || !bytes.Equal(body, want) {
				t.Errorf("GET %s (%q): %d, %d bytes, want the %d bytes of %s", c.path, accept, resp.StatusCode, len(body), len(want), c.file)
			}
			if h.Get("Content-Type") != c.ctype || h.Get("Cache-Control") != "no-cache" || h.Get("Vary") != "Accept-Encoding" || h.Get("ETag") == "" {
				t.Errorf("GET %s (%q): headers %v", c.path, accept, h)
			}
			again, _ := get(c.path, map[string]string{"Accept-Encoding": accept, "If-None-Match": h.Get("ETag")})
			if again.StatusCode != http.StatusNotModified {
				t.Errorf("GET %s (%q) If-None-Match %s: %d, want 304", c.path, accept, h.Get("ETag"), again.StatusCode)
			}
		}
		zipped, _ := get(c.path, map[string]string{"Accept-Encoding": "gzip"})
		plain, _ := get(c.path, nil)
		if zipped.Header.Get("ETag") == plain.Header.Get("ETag") {
			t.Errorf("GET %s: the gzip and plain forms share the ETag %s", c.path, plain.Header.Get("ETag"))
		}
		if resp, _ := get(c.path, map[string]string{"If-None-Match": zipped.Header.Get("ETag")}); resp.StatusCode != 200 {
			t.Errorf("GET %s without gzip, If-None-Match of the gzip form: %d, want 200 with the plain form", c.path, resp.StatusCode)
		}
	}
	if resp, _ := get("/static/i18n/", nil); resp.StatusCode != 404 {
		t.Errorf("GET /static/i18n/: %d, want 404 (no directory listings)", resp.StatusCode)
	}
}

// The page names its icon, and the icon is there: no 404 for a favicon.
func TestFaviconLinkedAndServed(t *testing.T) {
	mux := http.NewServeMux()
	Mount(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	page, err := fs.ReadFile(Assets, "index.html")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`<link rel="icon" href="([^"]+)"`).FindSubmatch(page)
	if m == nil {
		t.Fatal("index.html links no icon")
	}
	resp, err := http.Get(srv.URL + string(m[1]))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/svg+xml" || !bytes.Contains(body, []byte("<svg")) {
		t.Fatalf("GET %s: %d %q, %d bytes", m[1], resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
	}
}
