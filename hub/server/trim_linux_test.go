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

	"linli/hub/store"
	"linli/shared/event"
	"linli/shared/kv"
)

// A started hub holds none of its store's table pages that opening the
// store touched: Badger reads every table's whole index and bloom filter
// at open, which otherwise stayed resident in proportion to the history
// stored.
func TestHubGivesBackTablePagesOpenTouched(t *testing.T) {
	dir := t.TempDir()
	cfg := hubConfig(dir)
	// The hub's own profile: its tables are not compacted while the test
	// looks (the small profile's compaction reads them as it starts).
	cfg.Profile = string(kv.Server)
	st, err := store.Open(filepath.Join(dir, "store"), kv.Profile(cfg.Profile), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	// Events of many devices interleaved, as a community's history is:
	// one key each, so the tables' indexes and bloom filters are large.
	const devices, events, batch = 50, 250_000, 25_000
	for from := 0; from < events; from += batch {
		b := st.NewBadgerBatch()
		for i := from; i < from+batch; i++ {
			ev := &event.Event{Device: fmt.Sprintf("gw-%02d", i%devices), Seq: uint64(i/devices + 1), HLC: 1, Kind: event.KindReading}
			b.PutEvent("s1", ev, []byte(fmt.Sprintf("reading %d of a sensor in the building, padded to a realistic size", i)))
		}
		if err := b.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	h, err := Start(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Stop()
	var index int64
	for _, tb := range h.store.DB().Tables() {
		index += int64(tb.IndexSz)
	}
	if index < 64<<10 {
		t.Fatalf("the store's tables have %d bytes of index, too few to tell", index)
	}
	resident := mappedRSS(t, filepath.Join(dir, "store"), ".sst")
	if resident > index/4 {
		t.Fatalf("%d bytes of the store's tables resident after the start, want far under their %d bytes of index and bloom filters", resident, index)
	}
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
