package api

import (
	"context"
	"io"
	"net/http"

	"linli/shared/httpx"
)

// Backups takes consistent backups of the hub on demand.
type Backups interface {
	// Snapshot takes a backup; the caller writes it out and closes it. An
	// error means nothing was taken.
	Snapshot(ctx context.Context) (Snapshot, error)
}

// Snapshot is a backup taken and ready to be written out.
type Snapshot interface {
	io.WriterTo
	io.Closer
	// Name is the archive's file name.
	Name() string
	// Delivered records that the whole archive reached the client, so
	// what it covers counts as backed up (the hub's backup horizon).
	Delivered() error
}

func (a *API) mountBackup(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/backup", a.wrap(a.requireAdmin(a.backup)))
}

// backup streams an archive of the hub. It holds the hub's signing key
// and the admin token itself, so only the admin (the admin token or a
// session opened with it) may take one, not an account with the admin
// role.
func (a *API) backup(w http.ResponseWriter, r *http.Request) error {
	p, err := a.Caller(r)
	if err != nil {
		return err
	}
	if p.Name != "admin" {
		return &httpx.Error{Status: http.StatusForbidden, Msg: "a backup holds the hub's keys and admin token: it needs the admin token"}
	}
	snap, err := a.Backups.Snapshot(r.Context())
	if err != nil {
		return err
	}
	defer snap.Close()
	w.Header().Set("Content-Type", "application/x-tar")
	w.Header().Set("Content-Disposition", `attachment; filename="`+snap.Name()+`"`)
	w.Header().Set("Cache-Control", "no-store")
	n, err := snap.WriteTo(w)
	if err != nil {
		// The answer has begun: all the client can see is a short body,
		// which a restore refuses.
		a.Logger.Warn("backup download cut short", "name", snap.Name(), "bytes", n, "err", err)
		return nil
	}
	a.Logger.Info("backup downloaded", "name", snap.Name(), "bytes", n, "who", p.Name, "via", p.Via)
	if err := snap.Delivered(); err != nil {
		a.Logger.Error("record what the backup covers", "name", snap.Name(), "err", err)
	}
	return nil
}
