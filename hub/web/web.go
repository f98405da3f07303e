// Package web serves the operator dashboard: a single page whose assets
// are embedded in the hub binary (no CDN, no internet), speaking only to
// the hub's own API and live stream.
package web

import (
	"bytes"
	"embed"
	"fmt"
	"io/fs"
	"net/http"
	"strings"
	"sync"
	"time"

	"linli/shared/httpx"
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

var assets = sync.OnceValues(func() (map[string]*httpx.Asset, error) {
	files, err := httpx.LoadAssets(Assets)
	if err != nil {
		return nil, fmt.Errorf("load dashboard assets: %w", err)
	}
	return files, nil
})

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
		h.Set("Content-Type", a.Type)
		h.Set("Cache-Control", "no-cache")
		h.Set("Vary", "Accept-Encoding")
		body, etag := a.Body, a.ETag
		if a.Gz != nil && httpx.AcceptsGzip(r) {
			body, etag = a.Gz, strings.TrimSuffix(a.ETag, `"`)+`-gz"`
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
