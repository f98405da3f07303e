// Package web serves the operator dashboard: a single page whose assets
// are embedded in the hub binary (no CDN, no internet), speaking only to
// the hub's own API and live stream.
package web

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
	"strings"
	"sync"
	"time"
)

//go:embed static
var static embed.FS

// Assets is the dashboard's files (index.html, app.js, app.css, favicon.svg,
// i18n/).
var Assets = func() fs.FS {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embed above guarantees the directory
	}
	return sub
}()

// csp lets the page load only its own files and talk only to its origin:
// no inline script, so injected markup cannot run.
const csp = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; media-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

// asset is one dashboard file ready to serve, compressed once at start.
type asset struct {
	body, gz []byte // gz is nil when gzip does not make the file smaller
	ctype    string
	etag     string // of body; the gzip form's is etag with -gz before the closing quote
}

// contentTypes covers every extension under static/: each file is served
// with its type set, never sniffed (and never sniffed from gzip bytes).
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".json": "application/json; charset=utf-8",
	".svg":  "image/svg+xml",
}

// loadAssets reads and gzips every file of fsys.
func loadAssets(fsys fs.FS) (map[string]*asset, error) {
	out := map[string]*asset{}
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		ctype, ok := contentTypes[path.Ext(p)]
		if !ok {
			return fmt.Errorf("static/%s: no content type for %q", p, path.Ext(p))
		}
		body, err := fs.ReadFile(fsys, p)
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
			return fmt.Errorf("gzip static/%s: %w", p, err)
		}
		if err := zw.Close(); err != nil {
			return fmt.Errorf("gzip static/%s: %w", p, err)
		}
		if buf.Len() < len(body) {
			a.gz = buf.Bytes()
		}
		out[p] = a
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load dashboard assets: %w", err)
	}
	return out, nil
}

var assets = sync.OnceValues(func() (map[string]*asset, error) { return loadAssets(Assets) })

// Mount serves the dashboard at GET / and its files under /static/, gzipped
// to a browser that accepts it. Every answer is revalidated (no-cache with
// an ETag per encoding), so a new hub binary's page shows on the next load.
func Mount(mux *http.ServeMux) {
	files, err := assets()
	if err != nil {
		panic(err) // the embedded files are fixed at build; web_test loads them all
	}
	serve := func(w http.ResponseWriter, r *http.Request, name string) {
		a := files[name]
		if a == nil {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Type", a.ctype)
		h.Set("Cache-Control", "no-cache")
		h.Set("Vary", "Accept-Encoding")
		body, etag := a.body, a.etag
		if a.gz != nil && acceptsGzip(r) {
			body, etag = a.gz, strings.TrimSuffix(a.etag, `"`)+`-gz"`
			h.Set("Content-Encoding", "gzip")
		}
		h.Set("ETag", etag)
		// ServeContent answers If-None-Match (304), HEAD and ranges.
		http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(body))
	}
	mux.Handle("GET /static/{file...}", secure(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		serve(w, r, r.PathValue("file"))
	})))
	mux.Handle("GET /{$}", secure(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		serve(w, r, "index.html")
	})))
}

// acceptsGzip reports whether the request's Accept-Encoding takes gzip
// (and does not refuse it with q=0).
func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		enc, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(enc), "gzip") {
			q := strings.ReplaceAll(strings.TrimSpace(params), " ", "")
			return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
		}
	}
	return false
}

func secure(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", csp)
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "same-origin")
		hd.Set("X-Frame-Options", "DENY")
		h.ServeHTTP(w, r)
	})
}
