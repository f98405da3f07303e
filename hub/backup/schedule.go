package backup

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"linli/hub/store"
)

// Scheduler writes a backup into Dir every Every and keeps the newest
// Keep of them.
type Scheduler struct {
	Dir   string
	Every time.Duration
	Keep  int
	// Source is what each backup is taken of; its Spool is set to Dir.
	Source Source
	Logger *slog.Logger
	Now    func() time.Time
	// Covered, when set, is told what each backup covers once it is
	// written and checked (the hub's backup horizon); never for a backup
	// that failed.
	Covered func(store.Marks) error

	mu    sync.Mutex
	stats Stats
}

// Stats are the scheduler's figures for metrics.
type Stats struct {
	LastSuccess  time.Time // when the last good backup finished
	LastSize     int64
	LastDuration time.Duration
	Failures     uint64
}

// Stats returns the figures so far.
func (s *Scheduler) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

func (s *Scheduler) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Run backs up on schedule until ctx ends. The first backup is due Every
// after the newest one already in Dir (at once when there is none), so
// restarts do not postpone backups for ever.
func (s *Scheduler) Run(ctx context.Context) {
	next := s.now()
	if last, ok := s.newest(); ok {
		next = last.Add(s.Every)
	}
	for {
		t := time.NewTimer(max(0, next.Sub(s.now())))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if _, err := s.BackupNow(ctx); err != nil && ctx.Err() == nil {
			s.Logger.Error("scheduled backup failed", "dir", s.Dir, "err", err)
		}
		next = s.now().Add(s.Every)
	}
}

// BackupNow writes one backup into Dir atomically (a temporary file,
// fsync, rename, fsync of the dir), reads it back to check it, and prunes
// the oldest beyond Keep. It returns the backup's path.
func (s *Scheduler) BackupNow(ctx context.Context) (string, error) {
	start := s.now()
	path, size, marks, err := s.write(ctx)
	if err == nil {
		if _, _, err = Verify(path); err != nil {
			err = errors.Join(fmt.Errorf("check %s after writing: %w", path, err), os.Remove(path))
		}
	}
	s.mu.Lock()
	if err != nil {
		s.stats.Failures++
	} else {
		s.stats.LastSuccess, s.stats.LastSize, s.stats.LastDuration = s.now(), size, s.now().Sub(start)
	}
	s.mu.Unlock()
	if err != nil {
		return "", err
	}
	s.Logger.Info("backup written", "path", path, "bytes", size, "took", s.now().Sub(start).Round(time.Millisecond))
	if s.Covered != nil {
		if err := s.Covered(marks); err != nil {
			s.Logger.Error("record what the backup covers", "path", path, "err", err)
		}
	}
	if err := s.prune(); err != nil {
		s.Logger.Warn("prune old backups", "dir", s.Dir, "err", err)
	}
	return path, nil
}

func (s *Scheduler) write(ctx context.Context) (string, int64, store.Marks, error) {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return "", 0, nil, fmt.Errorf("backup dir: %w", err)
	}
	src := s.Source
	src.Spool, src.Now = s.Dir, s.Now
	a, err := Take(ctx, src)
	if err != nil {
		return "", 0, nil, err
	}
	defer a.Close()
	f, err := os.CreateTemp(s.Dir, ".tmp-"+a.Name()+"-*")
	if err != nil {
		return "", 0, nil, fmt.Errorf("backup: %w", err)
	}
	tmp := f.Name()
	fail := func(err error) (string, int64, store.Marks, error) {
		f.Close()
		return "", 0, nil, errors.Join(fmt.Errorf("backup: write %s: %w", tmp, err), os.Remove(tmp))
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	n, err := a.WriteTo(bw)
	if err != nil {
		return fail(err)
	}
	if err := bw.Flush(); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		return fail(err)
	}
	path := filepath.Join(s.Dir, a.Name())
	if err := os.Rename(tmp, path); err != nil {
		return "", 0, nil, errors.Join(fmt.Errorf("backup: %w", err), os.Remove(tmp))
	}
	if err := syncDir(s.Dir); err != nil {
		return "", 0, nil, err
	}
	return path, n, a.Marks, nil
}

// backups lists the finished backups of this hub in Dir, oldest first.
func (s *Scheduler) backups() ([]string, []time.Time) {
	entries, err := os.ReadDir(s.Dir)
	if err != nil {
		return nil, nil
	}
	prefix := "linli-hub-" + s.Source.Hub + "-"
	type b struct {
		name string
		at   time.Time
	}
	var bs []b
	for _, e := range entries {
		stamp, ok := strings.CutPrefix(e.Name(), prefix)
		if !ok || !e.Type().IsRegular() {
			continue
		}
		at, err := time.Parse(stampLayout, strings.TrimSuffix(stamp, ".tar"))
		if err != nil || !strings.HasSuffix(stamp, ".tar") {
			continue
		}
		bs = append(bs, b{e.Name(), at})
	}
	slices.SortFunc(bs, func(x, y b) int { return x.at.Compare(y.at) })
	names, times := make([]string, len(bs)), make([]time.Time, len(bs))
	for i, x := range bs {
		names[i], times[i] = x.name, x.at
	}
	return names, times
}

func (s *Scheduler) newest() (time.Time, bool) {
	_, times := s.backups()
	if len(times) == 0 {
		return time.Time{}, false
	}
	return times[len(times)-1], true
}

// prune deletes the oldest backups beyond Keep, and temporary files a
// crash left.
func (s *Scheduler) prune() error {
	names, _ := s.backups()
	var errs []error
	for len(names) > s.Keep {
		if err := os.Remove(filepath.Join(s.Dir, names[0])); err != nil {
			errs = append(errs, err)
		}
		names = names[1:]
	}
	entries, err := os.ReadDir(s.Dir)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".tmp-linli-hub-") {
			if info, err := e.Info(); err == nil && s.now().Sub(info.ModTime()) > time.Hour {
				errs = append(errs, os.Remove(filepath.Join(s.Dir, e.Name())))
			}
		}
	}
	return errors.Join(errs...)
}
