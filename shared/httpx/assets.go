package httpx

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strings"
)

// Asset is one embedded web file, read and gzipped once at start.
type Asset struct {
	Body []byte
	Gz   []byte // nil when gzip does not make the file smaller
	Type string // Content-Type, set on every answer: never sniffed
	ETag string // of Body, quoted
}

// assetTypes covers every extension the embedded UIs ship; LoadAssets
// refuses others, so a file is never served with a sniffed type (and never
// sniffed from gzip bytes).
var assetTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".json": "application/json; charset=utf-8",
	".svg":  "image/svg+xml",
}

// LoadAssets reads and gzips every file of fsys, keyed by its path in fsys.
func LoadAssets(fsys fs.FS) (map[string]*Asset, error) {
	out := map[string]*Asset{}
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		ctype, ok := assetTypes[path.Ext(p)]
		if !ok {
			return fmt.Errorf("%s: no content type for %q", p, path.Ext(p))
		}
		body, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		a := &Asset{Body: body, Type: ctype, ETag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		var buf bytes.Buffer
		zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		if err != nil {
			return err
		}
		if _, err := zw.Write(body); err != nil {
			return fmt.Errorf("gzip %s: %w", p, err)
		}
		if err := zw.Close(); err != nil {
			return fmt.Errorf("gzip %s: %w", p, err)
		}
		if buf.Len() < len(body) {
			a.Gz = buf.Bytes()
		}
		out[p] = a
		return nil
	})
	return out, err
}

// AcceptsGzip reports whether r's Accept-Encoding takes gzip (named in any
// case, with any q but zero).
func AcceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		enc, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(enc), "gzip") {
			q := strings.ReplaceAll(strings.TrimSpace(params), " ", "")
			return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
		}
	}
	return false
}
