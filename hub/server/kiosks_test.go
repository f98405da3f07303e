package server

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	"linli/hub/store"
	"linli/shared/kv"
)

// The seat policy asks for each site's kiosks, for every site, every few
// seconds, while it holds the merged state's write lock. The answer must
// cost that site's devices, not the fleet's: with 5,000 devices over 500
// sites every call copied and sorted all 5,000 records, a round took
// seconds, and the ingest's commits waited behind it until a 5,000-edge
// fleet's acks all but stopped.
func TestKiosksCostTheirSiteOnly(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	st, err := store.Open(filepath.Join(dir, "store"), kv.Profile("small"), log)
	if err != nil {
		t.Fatal(err)
	}
	b := st.NewBatch()
	const devices, sites = 5000, 500
	for i := range devices {
		b.PutDevice(&store.DeviceRecord{ID: fmt.Sprintf("gw-%04d", i), Site: fmt.Sprintf("s%03d", i%sites), Role: "gateway"})
	}
	for _, id := range []string{"k-2", "k-1", "k-3"} {
		b.PutDevice(&store.DeviceRecord{ID: id, Site: "s007", Role: "kiosk"})
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	h, err := Start(context.Background(), hubConfig(dir), log)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Stop()
	// Enrolled kiosks count; k-3 is heard of but never enrolled.
	for _, id := range []string{"k-1", "k-2"} {
		tok, _, err := h.registry.Issue(id, "s007", "kiosk", "", time.Hour, false)
		if err != nil {
			t.Fatal(err)
		}
		pub, _, err := ed25519.GenerateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := h.registry.Enroll(tok.String(), pub); err != nil {
			t.Fatal(err)
		}
	}
	if got := h.kiosks("s007"); !slices.Equal(got, []string{"k-1", "k-2"}) {
		t.Fatalf("kiosks of s007: %v, want [k-1 k-2]", got)
	}
	if got := h.kiosks("s008"); len(got) != 0 {
		t.Fatalf("kiosks of s008: %v, want none", got)
	}

	const calls = 100
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range calls {
		h.kiosks("s008")
	}
	runtime.ReadMemStats(&after)
	// s008 has 10 devices; the whole fleet's records are about 1.5 MB.
	if per := (after.TotalAlloc - before.TotalAlloc) / calls; per > 64<<10 {
		t.Fatalf("kiosks of one site allocate %d bytes a call with %d devices in %d sites: it reads the whole fleet", per, devices, sites)
	}
}
