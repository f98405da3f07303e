package kiosk

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strconv"
	"strings"

	"linli/shared/httpx"
)

// web holds the resident UI: plain HTML, CSS and JavaScript with one string
// catalogue per language, and nothing fetched from anywhere but this edge.
//
//go:embed web
var web embed.FS

// asset is one file of the UI, ready to serve.
type asset struct {
	body  []byte
	gz    []byte // nil when gzip does not make it smaller
	ctype string
	etag  string
}

// UI serves the embedded resident web UI. Every answer is revalidated
// (no-cache with an ETag), so a kiosk shows a new binary's UI on its next
// load; files are gzipped once at start.
type UI struct {
	assets map[string]*asset
}

// contentTypes covers every extension under web/; NewUI refuses others so
// that nothing is served as something the browser would sniff.
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".json": "application/json; charset=utf-8",
	".svg":  "image/svg+xml",
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
	u := &UI{assets: map[string]*asset{}}
	root, err := fs.Sub(web, "web")
	if err != nil {
		return nil, err
	}
	err = fs.WalkDir(root, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		ctype, ok := contentTypes[path.Ext(p)]
		if !ok {
			return fmt.Errorf("web/%s: no content type for %q", p, path.Ext(p))
		}
		body, err := fs.ReadFile(root, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		a := &asset{body: body, ctype: ctype, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		var buf bytes.Buffer
		zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		if err != nil {
			return err
		}
		if _, err := zw.Write(body); err != nil {
			return err
		}
		if err := zw.Close(); err != nil {
			return err
		}
		if buf.Len() < len(body) {
			a.gz = buf.Bytes()
		}
		u.assets["/"+p] = a
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load kiosk UI: %w", err)
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
		if a.gz != nil {
			n += len(a.gz)
		} else {
			n += len(a.body)
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
	h.Set("Content-Type", a.ctype)
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", a.etag)
	h.Set("Vary", "Accept-Encoding")
	if inm := r.Header.Get("If-None-Match"); inm != "" && strings.Contains(inm, a.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	body := a.body
	if a.gz != nil && acceptsGzip(r) {
		body = a.gz
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

func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		enc, q, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.TrimSpace(enc) == "gzip" && strings.TrimSpace(q) != "q=0" {
			return true
		}
	}
	return false
}
