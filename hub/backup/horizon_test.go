package backup

import (
	"context"
	"maps"
	"path/filepath"
	"testing"
	"time"

	"linli/hub/store"
)

// Each written and checked backup reports what it covers: every device's
// acked seq when it began; a failed backup reports nothing, so the hub's
// backup horizon stays where the last good one left it.
func TestSchedulerReportsWhatEachBackupCovers(t *testing.T) {
	data, s := hubData(t, 10)
	put := func(acked uint64) {
		t.Helper()
		b := s.NewBatch()
		b.PutDevice(&store.DeviceRecord{ID: "k1", Site: "s1", Acked: acked})
		b.PutDevice(&store.DeviceRecord{ID: "gw1", Site: "s2", Acked: 2 * acked})
		if err := b.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	put(7)
	var covered []store.Marks
	record := func(m store.Marks) error { covered = append(covered, maps.Clone(m)); return nil }
	now := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	sch := &Scheduler{Dir: filepath.Join(t.TempDir(), "backups"), Every: time.Hour, Keep: 2, Source: source(data, s), Logger: quiet,
		Now: func() time.Time { return now }, Covered: record}
	if _, err := sch.BackupNow(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(covered) != 1 || !maps.Equal(covered[0], store.Marks{"s1/k1": 7, "s2/gw1": 14}) {
		t.Fatalf("covered %v, want one backup of k1 at 7 and gw1 at 14", covered)
	}

	put(9)
	bad := &Scheduler{Dir: filepath.Join(data, "admin.token", "x"), Every: time.Hour, Keep: 1, Source: source(data, s), Logger: quiet,
		Covered: record}
	if _, err := bad.BackupNow(context.Background()); err == nil {
		t.Fatal("a backup into a file's path succeeded")
	}
	if len(covered) != 1 {
		t.Fatalf("a failed backup reported %v as covered", covered[1:])
	}
}
