package ingest

import (
	"log/slog"
	"testing"

	"linli/hub/store"
	"linli/shared/kv"
)

// Taking a site on reloads its device records from the store; the
// per-site index the seat policy reads must follow: a record seen in
// memory but never stored (its commit fenced) is gone, one another worker
// stored since is there. Before, the index kept the first (SiteDevices
// dereferenced its missing record and crashed the hub) and missed the
// second.
func TestSiteDevicesFollowReloadedSite(t *testing.T) {
	st, err := store.Open(t.TempDir(), kv.Server, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	in, err := New(Options{Store: BadgerStore{Store: st}, Leased: true})
	if err != nil {
		t.Fatal(err)
	}
	in.mu.Lock()
	in.device("s1", "unstored") // first contact, its commit never made
	in.mu.Unlock()
	b := st.NewBatch()
	b.PutDevice(&store.DeviceRecord{ID: "stored-elsewhere", Site: "s1"})
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := in.AddSite("s1"); err != nil {
		t.Fatal(err)
	}
	got := in.SiteDevices("s1")
	if len(got) != 1 || got[0].ID != "stored-elsewhere" {
		t.Fatalf("s1's devices after taking it on: %+v, want only stored-elsewhere", got)
	}
}
