// Package backup is the hub's backup archive: a tar whose first member,
// MANIFEST.json, names the format, the versions, the hub and the SHA-256
// of every other member; the hub's files (signing key, admin token, site
// CA) under files/; and its Badger store as one consistent stream
// (store.badger, Badger's own DB.Backup format).
package backup

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"linli/hub/store"
)

// Names inside an archive.
const (
	// Format is the archive layout this package writes and reads.
	Format       = 1
	ManifestName = "MANIFEST.json"
	StoreName    = "store.badger"
	filesPrefix  = "files/"
)

// Member is one member of an archive after the manifest.
type Member struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	Mode   uint32 `json:"mode"` // permission bits
	SHA256 string `json:"sha256"`
}

// Manifest is an archive's first member.
type Manifest struct {
	Format       int       `json:"format"`
	Linli        string    `json:"linli_version"`
	StoreVersion int       `json:"store_version"`
	Created      time.Time `json:"created"`
	Hub          string    `json:"hub_id"`
	// StoreTs is the newest Badger version in the store stream: the read
	// timestamp the stream is consistent at.
	StoreTs uint64   `json:"store_ts"`
	Members []Member `json:"members"`
}

// Source is what a backup is taken of.
type Source struct {
	Store *store.Store
	// Data is the hub's data dir: every regular file under it goes into
	// the archive except under Skip (the store's own directory, a backup
	// dir inside it), temporary files (*.tmp) and dotfiles (atomic
	// writes' temporaries).
	Data  string
	Skip  []string
	Hub   string
	Linli string
	// Spool is where the store stream waits while the archive is made
	// (a tar member's size comes before its bytes); it is unlinked at once.
	Spool string
	Now   func() time.Time
}

type fileEntry struct {
	m    Member
	data []byte
}

// Archive is a backup taken and ready to be written out.
type Archive struct {
	Manifest Manifest
	// Marks are every device's acked seq when the backup began: what it
	// covers once it is written out and checked.
	Marks store.Marks
	files []fileEntry
	spool *os.File
	store Member
}

// Take takes a consistent backup of src: the store at one read timestamp
// and the hub's files as they are now.
func Take(ctx context.Context, src Source) (_ *Archive, err error) {
	now := time.Now
	if src.Now != nil {
		now = src.Now
	}
	v, _, err := src.Store.Version()
	if err != nil {
		return nil, err
	}
	a := &Archive{Manifest: Manifest{Format: Format, Linli: src.Linli, StoreVersion: v, Created: now().UTC().Truncate(time.Second), Hub: src.Hub}}
	if a.spool, err = os.CreateTemp(src.Spool, ".linli-backup-store-*"); err != nil {
		return nil, fmt.Errorf("backup: spool: %w", err)
	}
	defer func() {
		if err != nil {
			a.spool.Close()
		}
	}()
	// Unlinked while open: nothing is left behind whatever happens.
	if err := os.Remove(a.spool.Name()); err != nil {
		return nil, fmt.Errorf("backup: spool: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// Read before the stream: acked only grows, so the stream, read after,
	// holds at least these.
	if a.Marks, err = src.Store.AckedMarks(); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	h := sha256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(a.spool, h), 1<<20)
	ts, err := src.Store.DB().Backup(bw, 0)
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		return nil, fmt.Errorf("backup: store stream: %w", err)
	}
	size, err := a.spool.Seek(0, io.SeekCurrent)
	if err != nil {
		return nil, fmt.Errorf("backup: spool: %w", err)
	}
	a.Manifest.StoreTs = ts
	a.store = Member{Name: StoreName, Size: size, Mode: 0o600, SHA256: hex.EncodeToString(h.Sum(nil))}
	if a.files, err = readFiles(src.Data, src.Skip); err != nil {
		return nil, err
	}
	for _, f := range a.files {
		a.Manifest.Members = append(a.Manifest.Members, f.m)
	}
	a.Manifest.Members = append(a.Manifest.Members, a.store)
	return a, nil
}

// readFiles reads every file of the data dir that a restore needs.
func readFiles(data string, skip []string) ([]fileEntry, error) {
	var out []fileEntry
	err := filepath.WalkDir(data, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if slices.ContainsFunc(skip, func(s string) bool { return filepath.Clean(s) == path }) {
			return filepath.SkipDir
		}
		name := d.Name()
		if path != data && strings.HasPrefix(name, ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || strings.HasSuffix(name, ".tmp") {
			return nil
		}
		rel, err := filepath.Rel(data, path)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		out = append(out, fileEntry{m: Member{Name: filesPrefix + filepath.ToSlash(rel), Size: int64(len(b)),
			Mode: uint32(info.Mode().Perm()), SHA256: hex.EncodeToString(sum[:])}, data: b})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("backup: read %s: %w", data, err)
	}
	return out, nil
}

// Name is the archive's file name: linli-hub-<hub>-<UTC time>.tar.
func (a *Archive) Name() string { return FileName(a.Manifest.Hub, a.Manifest.Created) }

// FileName is the name of a backup of hub taken at t.
func FileName(hub string, t time.Time) string {
	return "linli-hub-" + hub + "-" + t.UTC().Format(stampLayout) + ".tar"
}

const stampLayout = "20060102T150405Z"

// WriteTo writes the archive as a tar stream.
func (a *Archive) WriteTo(w io.Writer) (int64, error) {
	cw := &countWriter{w: w}
	tw := tar.NewWriter(cw)
	man, err := json.MarshalIndent(a.Manifest, "", "  ")
	if err != nil {
		return 0, err
	}
	put := func(m Member, r io.Reader) error {
		hdr := &tar.Header{Name: m.Name, Size: m.Size, Mode: int64(m.Mode), ModTime: a.Manifest.Created,
			Typeflag: tar.TypeReg, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := io.Copy(tw, r); err != nil {
			return fmt.Errorf("write %s: %w", m.Name, err)
		}
		return nil
	}
	if err := put(Member{Name: ManifestName, Size: int64(len(man)), Mode: 0o644}, strings.NewReader(string(man))); err != nil {
		return cw.n, err
	}
	for _, f := range a.files {
		if err := put(f.m, strings.NewReader(string(f.data))); err != nil {
			return cw.n, err
		}
	}
	if _, err := a.spool.Seek(0, io.SeekStart); err != nil {
		return cw.n, err
	}
	if err := put(a.store, io.LimitReader(a.spool, a.store.Size)); err != nil {
		return cw.n, err
	}
	return cw.n, tw.Close()
}

// Close releases the spooled store stream.
func (a *Archive) Close() error { return a.spool.Close() }

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// ErrBadArchive is wrapped by every error about an archive's content.
var ErrBadArchive = errors.New("not a usable linli-hub backup")
