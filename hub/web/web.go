// Package web serves the operator dashboard: a single page whose assets
// are embedded in the hub binary (no CDN, no internet), speaking only to
// the hub's own API and live stream.
package web

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var static embed.FS

// Assets is the dashboard's files (index.html, app.js, app.css, i18n/).
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

// Mount serves the dashboard at GET / and its files under /static/.
func Mount(mux *http.ServeMux) {
	files := http.FileServerFS(Assets)
	mux.Handle("GET /static/", secure(http.StripPrefix("/static/", files)))
	mux.Handle("GET /{$}", secure(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		http.ServeFileFS(w, r, Assets, "index.html")
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
