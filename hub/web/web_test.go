package web

import (
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
	if resp, err := http.Get(srv.URL + "/nope"); err != nil || resp.StatusCode != 404 {
		t.Fatalf("GET /nope: %v %v, want 404 (only / is the page)", resp, err)
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
