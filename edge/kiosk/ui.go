package kiosk

import (
	"embed"
	"fmt"
	"io/fs"
	"net/http"
	"strconv"
	"strings"

	"linli/shared/httpx"
)

// web holds the resident UI: plain HTML, CSS and JavaScript with one string
// catalogue per language, and nothing fetched from anywhere but this edge.
//
//go:embed web
var web embed.FS

// UI serves the embedded resident web UI. Every answer is revalidated
// (no-cache with an ETag), so a kiosk shows a new binary's UI on its next
// load; files are gzipped once at start.
type UI struct {
	assets map[string]*httpx.Asset
}

// securityHeaders lock the page to its own origin: a kiosk UI has no reason
// to load, frame or send anything elsewhere, and scripts and styles come
// from files only (no inline code), which keeps injected text inert.
var securityHeaders = map[string]string{
	"Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
		"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
	"X-Content-Type-Options": "nosniff",
	"X-Frame-Options":        "DENY",
	"Referrer-Policy":        "no-referrer",
	"Permissions-Policy":     "camera=(), microphone=(), geolocation=()",
}

// NewUI loads the embedded files.
func NewUI() (*UI, error) {
	root, err := fs.Sub(web, "web")
	if err != nil {
		return nil, err
	}
	files, err := httpx.LoadAssets(root)
	if err != nil {
		return nil, fmt.Errorf("load kiosk UI: %w", err)
	}
	u := &UI{assets: map[string]*httpx.Asset{}}
	for p, a := range files {
		u.assets["/"+p] = a
	}
	if u.assets["/index.html"] == nil {
		return nil, fmt.Errorf("load kiosk UI: web/index.html is missing")
	}
	return u, nil
}

// Size is the number of bytes of the named files as served to a browser
// that accepts gzip (the start screen's weight on the wire, less headers).
func (u *UI) Size(names ...string) (int, error) {
	n := 0
	for _, name := range names {
		a := u.assets[name]
		if a == nil {
			return 0, fmt.Errorf("no UI file %s", name)
		}
		if a.Gz != nil {
			n += len(a.Gz)
		} else {
			n += len(a.Body)
		}
	}
	return n, nil
}

func (u *UI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	if p == "/" {
		p = "/index.html"
	}
	a := u.assets[p]
	if a == nil {
		if strings.HasPrefix(p, "/api/") {
			httpx.WriteError(w, &httpx.Error{Status: http.StatusNotFound, Msg: "no route " + r.Method + " " + r.URL.Path})
			return
		}
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	for k, v := range securityHeaders {
		h.Set(k, v)
	}
	h.Set("Content-Type", a.Type)
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", a.ETag)
	h.Set("Vary", "Accept-Encoding")
	if inm := r.Header.Get("If-None-Match"); inm != "" && strings.Contains(inm, a.ETag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	body := a.Body
	if a.Gz != nil && httpx.AcceptsGzip(r) {
		body = a.Gz
		h.Set("Content-Encoding", "gzip")
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	if _, err := w.Write(body); err != nil {
		return // the browser went away; nothing to tell it
	}
}
