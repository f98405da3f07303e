package backup

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"linli/hub/store"
	"linli/shared/kv"
)

// ErrNotEmpty is Restore's answer for a data dir that holds anything.
var ErrNotEmpty = errors.New("is not empty: restore only into an empty or new data dir")

// RestoreOptions says how to restore.
type RestoreOptions struct {
	// Supported is the newest store version this binary runs; an archive
	// of a newer store is refused before anything is written.
	Supported int
	Profile   kv.Profile
	Logger    *slog.Logger
	Now       func() time.Time
}

// Restore restores the archive read from r, named from (for the record),
// into the data dir dir, which must be empty or missing. Everything is
// written into a temporary dir beside dir and renamed into place once
// the whole archive has checked out, so a bad archive leaves nothing.
// The store records the restore (store.Restore).
func Restore(r io.Reader, from, dir string, o RestoreOptions) (Manifest, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return Manifest{}, err
	}
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return Manifest{}, fmt.Errorf("%s %w", dir, ErrNotEmpty)
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return Manifest{}, fmt.Errorf("data dir: %w", err)
	}
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return Manifest{}, fmt.Errorf("data dir: %w", err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+".restore-*")
	if err != nil {
		return Manifest{}, fmt.Errorf("data dir: %w", err)
	}
	done := false
	defer func() {
		if !done {
			os.RemoveAll(tmp)
		}
	}()
	if err := os.Chmod(tmp, 0o700); err != nil {
		return Manifest{}, err
	}
	var st *store.Store
	defer func() {
		if st != nil {
			st.Close()
		}
	}()
	m, err := Read(r, func(m Manifest) error {
		if m.StoreVersion > o.Supported {
			return &store.TooNewError{Store: m.StoreVersion, Supported: o.Supported}
		}
		return nil
	}, func(mb Member, body io.Reader) error {
		if mb.Name == StoreName {
			if st, err = store.Open(filepath.Join(tmp, "store"), o.Profile, o.Logger); err != nil {
				return err
			}
			if err := st.DB().Load(body, 256); err != nil {
				return bad("load store stream: %v (truncated or damaged?)", err)
			}
			return nil
		}
		rel, ok := strings.CutPrefix(mb.Name, filesPrefix)
		if !ok || !filepath.IsLocal(rel) || path.Clean(rel) != rel {
			return bad("member %q is neither the store nor a file of the data dir", mb.Name)
		}
		return writeFile(filepath.Join(tmp, filepath.FromSlash(rel)), os.FileMode(mb.Mode&0o777), body)
	})
	if err != nil {
		return m, err
	}
	if err := st.RecordRestore(store.Restore{At: o.Now().UTC(), BackupCreated: m.Created, Hub: m.Hub, From: filepath.Base(from)}); err != nil {
		return m, err
	}
	err, st = st.Close(), nil
	if err != nil {
		return m, err
	}
	if err := syncTree(tmp); err != nil {
		return m, fmt.Errorf("sync restored files: %w", err)
	}
	// rename(2) replaces an empty directory; os.Rename refuses to.
	if err := syscall.Rename(tmp, dir); err != nil {
		return m, fmt.Errorf("move the restored data into %s: %w", dir, err)
	}
	done = true
	if err := syncDir(parent); err != nil {
		return m, err
	}
	return m, nil
}

func writeFile(name string, mode os.FileMode, r io.Reader) error {
	if err := os.MkdirAll(filepath.Dir(name), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// syncTree fsyncs every directory under root, so the entries of what was
// written survive a power cut once renamed.
func syncTree(root string) error {
	return filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		return syncDir(p)
	})
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		d.Close()
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return d.Close()
}
