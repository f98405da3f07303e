package server

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"linli/hub/store"
	"linli/shared/event"
	"linli/shared/kv"
	"linli/shared/test/poll"
)

// A started hub holds none of its store's table pages that opening the
// store touched: Badger reads every table's whole index and bloom filter
// at open, which otherwise stayed resident in proportion to the history
// stored.
func TestHubGivesBackTablePagesOpenTouched(t *testing.T) {
	t.Parallel() // its own store and hub; the two write their history side by side
	dir := t.TempDir()
	cfg := hubConfig(dir)
	// The hub's own profile: its tables are not compacted while the test
	// looks (the small profile's compaction reads them as it starts).
	cfg.Profile = string(kv.Server)
	cfg.trimEvery = time.Hour // only the start's trim
	writeTableHistory(t, filepath.Join(dir, "store"), kv.Profile(cfg.Profile))

	h, err := Start(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Stop()
	index := tableIndexBytes(t, h)
	resident := mappedRSS(t, filepath.Join(dir, "store"), ".sst")
	// Half: a few pages of the newest tables stay mapped in (64 KiB).
	if resident > index/2 {
		t.Fatalf("%d bytes of the store's tables resident after the start, want far under their %d bytes of index and bloom filters", resident, index)
	}
}

// A running hub gives back the table pages its work touched, not only
// those of the start: reads across the history (an operator paging
// through a device's events, a compaction) otherwise left them resident
// until the hub stopped.
func TestHubGivesBackTablePagesWorkTouched(t *testing.T) {
	t.Parallel() // its own store and hub; the two write their history side by side
	dir := t.TempDir()
	cfg := hubConfig(dir)
	cfg.Profile = string(kv.Server)
	cfg.trimEvery = 100 * time.Millisecond
	cfg.trimSlack = 1 << 20
	writeTableHistory(t, filepath.Join(dir, "store"), kv.Profile(cfg.Profile))

	h, err := Start(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Stop()
	// Every device's events, as the events API reads them: every table's
	// data blocks and index pages.
	read := 0
	for d := range tableDevices {
		for after := uint64(0); ; {
			evs, err := h.store.Events("s1", fmt.Sprintf("gw-%02d", d), after, 1000)
			if err != nil {
				t.Fatal(err)
			}
			if len(evs) == 0 {
				break
			}
			read += len(evs)
			after = evs[len(evs)-1].Seq
		}
	}
	if read != tableEvents {
		t.Fatalf("read %d events, want %d", read, tableEvents)
	}
	// The reads touched more than 5 MiB of the tables; what stays is
	// bounded by the slack (plus what the last check interval touched).
	store := filepath.Join(dir, "store")
	poll.Eventually(t, 10*time.Second, func() (bool, string) {
		resident := mappedRSS(t, store, ".sst")
		return resident <= 2*cfg.trimSlack, fmt.Sprintf("%d bytes of the store's tables still resident after the reads, want at most %d (the slack %d, twice)",
			resident, 2*cfg.trimSlack, cfg.trimSlack)
	})
}

const tableDevices, tableEvents = 50, 100_000

// writeTableHistory stores events of many devices interleaved, as a
// community's history is: one key each, so the tables' indexes and bloom
// filters are large.
func writeTableHistory(t *testing.T, dir string, p kv.Profile) {
	t.Helper()
	st, err := store.Open(dir, p, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	const batch = 25_000
	for from := 0; from < tableEvents; from += batch {
		b := st.NewBadgerBatch()
		for i := from; i < from+batch; i++ {
			ev, err := event.NewEvent(fmt.Sprintf("gw-%02d", i%tableDevices), uint64(i/tableDevices+1), 1,
				&event.Reading{Sensor: fmt.Sprintf("B1-t-%d", i%8), Type: "temperature", Value: float64(i%90) / 10, Building: "B1"})
			if err != nil {
				t.Fatal(err)
			}
			stored := ev
			stored.Device = "" // stored events leave their device out, as ingest stores them
			enc, err := stored.Encode()
			if err != nil {
				t.Fatal(err)
			}
			b.PutEvent("s1", &ev, enc)
		}
		if err := b.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
}

// tableIndexBytes is the bytes of index of the hub's store's tables.
func tableIndexBytes(t *testing.T, h *Hub) int64 {
	t.Helper()
	var index int64
	for _, tb := range h.store.DB().Tables() {
		index += int64(tb.IndexSz)
	}
	if index < 64<<10 {
		t.Fatalf("the store's tables have %d bytes of index, too few to tell", index)
	}
	return index
}

// mappedRSS sums the resident bytes of this process's mappings of files
// under dir whose name ends with suffix.
func mappedRSS(t *testing.T, dir, suffix string) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var total int64
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		if !strings.HasSuffix(fields[0], ":") {
			// A mapping's header: range perms offset dev inode [path].
			in = len(fields) >= 6 && strings.HasPrefix(fields[5], dir) && strings.HasSuffix(fields[5], suffix)
			continue
		}
		if in && fields[0] == "Rss:" && len(fields) >= 2 {
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			total += kb << 10
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return total
}
