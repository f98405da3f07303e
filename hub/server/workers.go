package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"linli/hub/api"
	"linli/hub/downlink"
	"linli/hub/ingest"
	"linli/hub/lease"
	"linli/hub/state"
	"linli/hub/store"
)

// followEvery is how often a worker folds what the others committed
// (state.Follow) and reads the enrolled devices again: the staleness of
// its view of the sites it does not hold, and of its registry.
const followEvery = 500 * time.Millisecond

// buildLeases makes the worker's lease manager and fences every commit
// of the PostgreSQL store with it. A site taken on is read anew from the
// store (its facts, its downlink head, the devices) before the worker
// decides or ingests for it; a site lost is given up in ingest first.
func (h *Hub) buildLeases() error {
	plans, err := api.LoadPlans(h.cfg.SitePlans)
	if err != nil {
		return err
	}
	var planSites []string
	for _, p := range plans {
		planSites = append(planSites, p.Site)
	}
	log := h.log.With("component", "lease")
	h.leases, err = lease.New(lease.Options{Pool: h.pg.Pool(), ID: h.cfg.ID,
		Sites:    lease.EnrolledSites(h.pg.Pool(), planSites, log),
		Load:     h.loadSites,
		Acquired: h.takeOn,
		Lost:     h.giveUp,
		Logger:   log})
	if err != nil {
		return err
	}
	h.pg.SetFence(h.leases.Fence, keySite)
	return nil
}

// keySite names the site of a keyed record the hub writes: the merged
// state's facts and erasures and the downlink's entries are per site.
func keySite(key []byte) string {
	if s := state.SiteOfKey(key); s != "" {
		return s
	}
	return downlink.SiteOfKey(key)
}

// owns says whether this worker has taken site on.
func (h *Hub) owns(site string) bool {
	_, ok := h.owned.Load(site)
	return ok
}

// loadSites reads sites just acquired anew from the store: their merged
// state and downlink head as their previous owner committed them, and
// the devices enrolled meanwhile (one registry read for the batch). The
// lease manager runs it outside its callbacks, so renewals and other
// sites' hand-overs never wait for it.
func (h *Hub) loadSites(sites []string) error {
	for _, site := range sites {
		if err := h.state.LoadSite(site); err != nil {
			return err
		}
		if err := h.down.LoadSite(site); err != nil {
			return err
		}
	}
	return h.registry.Refresh()
}

// takeOn makes the worker the writer of sites loaded: decisions for
// them, then ingest (one read of the device records, one subscription
// request). A site that cannot be taken on is refused: its lease is
// handed back.
func (h *Hub) takeOn(sites []string) map[string]error {
	for _, site := range sites {
		h.owned.Store(site, true)
	}
	if err := h.ingest.AddSites(sites); err != nil {
		refused := make(map[string]error, len(sites))
		for _, site := range sites {
			h.owned.Delete(site)
			refused[site] = fmt.Errorf("take site %s on: %w", site, err)
		}
		return refused
	}
	h.log.Info("sites taken on", "sites", len(sites))
	return nil
}

// giveUp stops writing for site: nothing more decided, stored or acked.
func (h *Hub) giveUp(site string) {
	h.owned.Delete(site)
	if err := h.ingest.RemoveSite(site); err != nil {
		h.log.Error("give site up", "site", site, "err", err)
	}
	h.log.Info("site given up", "site", site)
}

// follow keeps the worker's view of the sites it does not hold and its
// registry current until ctx ends.
func (h *Hub) follow(ctx context.Context) {
	t := time.NewTicker(followEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := h.state.Follow(); err != nil {
			h.log.Warn("follow the other workers' commits", "err", err)
		}
		if err := h.registry.Refresh(); err != nil {
			h.log.Warn("read the enrolled devices again", "err", err)
		}
		h.followWorkers()
	}
}

// followWorkers writes the Mosquitto files again when the district's
// workers change, so a worker that joins has its login whichever
// worker wrote last.
func (h *Hub) followWorkers() {
	if h.rewriteMosquitto == nil {
		return
	}
	ids, err := h.workerIDs()
	if err != nil {
		h.log.Warn("read the district's workers", "err", err)
		return
	}
	if slices.Equal(ids, h.workers) {
		return
	}
	if err := h.rewriteMosquitto(); err != nil {
		h.log.Error("rewrite mosquitto files", "err", err)
		return
	}
	h.workers = ids
}

// workerIDs lists the district's workers (the lease table's, which
// forgets a worker an hour after its last heartbeat), sorted.
func (h *Hub) workerIDs() ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	rows, err := h.pg.Pool().Query(ctx, `SELECT id FROM hub_workers ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("read workers: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("read workers: %w", err)
	}
	return ids, nil
}

// siteOwner names the worker holding site's live lease, "" if none.
func (h *Hub) siteOwner(site string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var owner string
	err := h.pg.Pool().QueryRow(ctx, `SELECT owner FROM site_leases WHERE site = $1 AND expires_at > now()`, site).Scan(&owner)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		h.log.Warn("read a site's owner", "site", site, "err", err)
	}
	return owner
}

// workerDevices is the devices API's source on a worker: ingest's live
// records of the sites it holds, and the stored records (as their owners
// last committed them) of every other site, so any worker answers for
// every device.
type workerDevices struct {
	in  *ingest.Ingest
	st  store.Backend
	log *slog.Logger
}

func (w workerDevices) Devices() []store.DeviceRecord {
	out := w.in.Devices()
	live := make(map[string]bool, len(out))
	for _, d := range out {
		live[d.ID] = true
	}
	stored, err := w.st.Devices()
	if err != nil {
		w.log.Warn("read the other workers' device records", "err", err)
	}
	for _, d := range stored {
		if !live[d.ID] {
			out = append(out, d)
		}
	}
	slices.SortFunc(out, func(a, b store.DeviceRecord) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

func (w workerDevices) Device(id string) (store.DeviceRecord, bool) {
	if d, ok := w.in.Device(id); ok {
		return d, true
	}
	stored, err := w.st.Devices()
	if err != nil {
		w.log.Warn("read the other workers' device records", "err", err)
	}
	for _, d := range stored {
		if d.ID == id {
			return d, true
		}
	}
	return store.DeviceRecord{}, false
}

// workerDelivery is the notice delivery's source on a worker: its own
// downlink index for the sites it holds, the stored log for the others.
type workerDelivery struct {
	h *Hub
}

func (w workerDelivery) Seq(site, entity, id string) (uint64, bool) {
	if w.h.owns(site) {
		return w.h.down.Seq(site, entity, id)
	}
	seq, ok, err := w.h.down.StoredSeq(site, entity, id)
	if err != nil {
		w.h.log.Warn("read another worker's downlink log", "site", site, "err", err)
	}
	return seq, ok
}
