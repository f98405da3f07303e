package server

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"

	"linli/hub/api"
	"linli/hub/backup"
	"linli/hub/store"
	"linli/shared/httpx"
	"linli/shared/kv"
)

// backupSource is what a backup of this hub holds: the store and every
// file of the data dir but the store's own (and a backup dir inside it).
// spool is where the store stream waits while the archive is made.
func (h *Hub) backupSource(spool string) backup.Source {
	data, err := filepath.Abs(h.cfg.Data)
	if err != nil {
		data = h.cfg.Data
	}
	skip := []string{filepath.Join(data, "store")}
	if h.cfg.BackupDir != "" {
		if dir, err := filepath.Abs(h.cfg.BackupDir); err == nil {
			skip = append(skip, dir)
		}
	}
	return backup.Source{Store: h.store, Data: data, Skip: skip, Hub: h.cfg.ID, Linli: Version, Spool: spool}
}

// snapshots serves GET /api/v1/backup.
type snapshots struct{ h *Hub }

func (s snapshots) Snapshot(ctx context.Context) (api.Snapshot, error) {
	h := s.h
	h.takeMu.Lock()
	if h.closing {
		h.takeMu.Unlock()
		return nil, &httpx.Error{Status: http.StatusServiceUnavailable, Msg: "the hub is stopping"}
	}
	h.takes.Add(1)
	h.takeMu.Unlock()
	defer h.takes.Done()
	a, err := backup.Take(ctx, h.backupSource(h.cfg.Data))
	if err != nil {
		h.log.Error("backup on demand failed", "err", err)
		return nil, fmt.Errorf("take backup: %w", err)
	}
	return delivery{Archive: a, horizon: h.horizon}, nil
}

// pgBackups answers GET /api/v1/backup on a hub whose state is in
// PostgreSQL: the database is backed up with its own tools.
type pgBackups struct{}

func (pgBackups) Snapshot(context.Context) (api.Snapshot, error) {
	return nil, &httpx.Error{Status: http.StatusNotImplemented, Msg: errPostgresBackup}
}

// errPostgresBackup says how a hub on PostgreSQL is backed up.
const errPostgresBackup = "this hub keeps its state in PostgreSQL, which its own tools back up (pg_dump, pg_basebackup, WAL archiving); " +
	"copy the hub's key and TLS files in its data dir separately"

// delivery is a backup on demand; once the client has all of it, what it
// covers moves the backup horizon.
type delivery struct {
	*backup.Archive
	horizon *store.Horizon
}

func (d delivery) Delivered() error { return d.horizon.Covered(d.Marks) }

// restoreMain is `linli-hub restore --data DIR --from FILE`: it restores a
// backup into an empty (or new) data dir. A non-empty dir, a bad archive
// or one of a newer store: exit 2 and one line.
func restoreMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("linli-hub restore", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", envOr("LINLI_DATA", "./data/hub"), "the data dir to restore into (empty or new)")
	from := fs.String("from", "", "the backup archive (from GET /api/v1/backup or --backup-dir)")
	profile := fs.String("profile", envOr("LINLI_PROFILE", string(kv.Server)), "store memory profile: small or server")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fail := func(code int, setting, format string, a ...any) int {
		fmt.Fprintf(stderr, "linli-hub restore: bad setting %q: %s\n", setting, fmt.Sprintf(format, a...))
		return code
	}
	p, err := kv.ParseProfile(*profile)
	if err != nil {
		return fail(2, "profile", "%v", err)
	}
	if *from == "" {
		return fail(2, "from", "is required")
	}
	f, err := os.Open(*from)
	if err != nil {
		return fail(2, "from", "%v", err)
	}
	defer f.Close()
	m, err := backup.Restore(f, *from, *data, backup.RestoreOptions{Supported: storeVersion, Profile: p,
		Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	var tooNew *store.TooNewError
	switch {
	case errors.Is(err, backup.ErrNotEmpty):
		return fail(2, "data", "%v", err)
	case errors.Is(err, backup.ErrBadArchive):
		return fail(2, "from", "%s: %v", *from, err)
	case errors.As(err, &tooNew):
		fmt.Fprintf(stderr, "linli-hub restore: %s: %v\n", *from, err)
		return 2
	case err != nil:
		fmt.Fprintf(stderr, "linli-hub restore: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "restored %s (hub %s, taken %s, store version %d) into %s; start it with linli-hub --data %s --id %s\n",
		filepath.Base(*from), m.Hub, m.Created.Format("2006-01-02T15:04:05Z"), m.StoreVersion, *data, *data, m.Hub)
	return 0
}
