package lazyfs

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"linli/shared/test/poll"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

func mount(t *testing.T) (*FS, string) {
	t.Helper()
	if err := Available(); err != nil {
		t.Fatalf("fault tests need root and /dev/fuse: %v", err)
	}
	dir, mnt := t.TempDir(), t.TempDir()
	l, err := Mount(dir, mnt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Unmount(); err != nil {
			t.Error(err)
		}
	})
	return l, mnt
}

func remount(t *testing.T, l *FS, mnt string) *FS {
	t.Helper()
	l2, err := Mount(l.Dir(), mnt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l2.Unmount(); err != nil {
			t.Error(err)
		}
	})
	return l2
}

func TestCrashKeepsOnlySyncedData(t *testing.T) {
	l, mnt := mount(t)
	path := filepath.Join(mnt, "f")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	synced := bytes.Repeat([]byte("s"), 10000)
	if _, err := f.Write(synced); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	// Overwrite inside the synced part and grow past it, then never sync.
	if _, err := f.WriteAt([]byte("XXXX"), 5000); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(bytes.Repeat([]byte("u"), 9000), 10000); err != nil {
		t.Fatal(err)
	}
	never, err := os.Create(filepath.Join(mnt, "never-synced"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := never.Write([]byte("gone")); err != nil {
		t.Fatal(err)
	}
	f.Close()
	never.Close()
	st, err := l.Crash()
	if err != nil {
		t.Fatal(err)
	}
	if st.CutFiles != 2 {
		t.Errorf("cut files = %d, want 2", st.CutFiles)
	}
	got, err := os.ReadFile(filepath.Join(l.Dir(), "f"))
	if err != nil || !bytes.Equal(got, synced) {
		t.Fatalf("after the cut f has %d bytes (%v), want the 10000 synced ones", len(got), err)
	}
	if b, err := os.ReadFile(filepath.Join(l.Dir(), "never-synced")); err != nil || len(b) != 0 {
		t.Fatalf("never-synced after the cut: %q %v, want empty", b, err)
	}
}

// Files below the root (in a directory, or opened again after they were
// made) go through the layer too: Badger keeps its files in a directory
// and opens them again after a restart.
func TestCrashCutsFilesBelowTheRoot(t *testing.T) {
	l, mnt := mount(t)
	if err := os.Mkdir(filepath.Join(mnt, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(mnt, "sub", "f")
	if err := os.WriteFile(path, []byte("synced"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	f, err = os.OpenFile(path, os.O_RDWR|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte(" and lost")); err != nil {
		t.Fatal(err)
	}
	f.Close()
	st, err := l.Crash()
	if err != nil {
		t.Fatal(err)
	}
	if st.CutFiles != 1 {
		t.Errorf("cut files = %d, want 1", st.CutFiles)
	}
	if got, err := os.ReadFile(filepath.Join(l.Dir(), "sub", "f")); err != nil || string(got) != "synced" {
		t.Fatalf("sub/f after the cut: %q %v, want %q", got, err, "synced")
	}
}

// mmapChild is set in the child process of TestMmapWritesAndMsync.
const mmapChild = "LAZYFS_TEST_MMAP_CHILD"

func TestMain(m *testing.M) {
	if path := os.Getenv(mmapChild); path != "" {
		if err := mmapWrites(path); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

// mmapWrites writes "first" through a shared mapping and msyncs it, then
// writes "second" and does not. It runs in a child process: a page fault
// on the layer, served by the faulting process itself, can deadlock with
// Go's stop-the-world (the faulting thread is at no safe point).
func mmapWrites(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(1 << 20); err != nil {
		return err
	}
	m, err := syscall.Mmap(int(f.Fd()), 0, 1<<20, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("shared writable mmap on the layer: %w", err)
	}
	copy(m[0:], "first")
	if err := unix.Msync(m, unix.MS_SYNC); err != nil {
		return err
	}
	copy(m[8192:], "second")
	return syscall.Munmap(m)
}

// Badger writes its WAL through a shared mmap and syncs it with msync:
// that must reach the layer as writes and an fsync.
func TestMmapWritesAndMsync(t *testing.T) {
	l, mnt := mount(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), mmapChild+"="+filepath.Join(mnt, "wal"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if l.Stats().Fsyncs == 0 {
		t.Fatal("msync did not reach the layer as an fsync")
	}
	if _, err := l.Crash(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(l.Dir(), "wal"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1<<20 || string(got[:5]) != "first" || got[8192] != 0 {
		t.Fatalf("after the cut: %d bytes, %q at 0, %q at 8192; want 1 MiB, first, zeros", len(got), got[:5], got[8192:8198])
	}
}

func TestFaults(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault Fault
		want  []bool // per write+fsync pair: does the pair fail
	}{
		{"second write once", Fault{Op: OpWrite, N: 2}, []bool{false, true, false, false}},
		{"second write on", Fault{Op: OpWrite, N: 2, Persistent: true}, []bool{false, true, true, true}},
		{"third fsync once", Fault{Op: OpFsync, N: 3}, []bool{false, false, true, false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, mnt := mount(t)
			f, err := os.Create(filepath.Join(mnt, "f"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			l.SetFault(&tc.fault)
			for i, wantFail := range tc.want {
				_, werr := f.Write([]byte("data"))
				serr := f.Sync()
				failed := werr != nil || serr != nil
				if failed != wantFail {
					t.Errorf("pair %d: write %v, fsync %v; want failure %v", i+1, werr, serr, wantFail)
				}
				if failed && !errors.Is(errors.Join(werr, serr), syscall.EIO) {
					t.Errorf("pair %d: %v %v, want EIO", i+1, werr, serr)
				}
			}
		})
	}
}

// As on Linux, a page whose writeback failed is not made durable by a
// later fsync that succeeds, unless it was written again.
func TestFailedFsyncLosesItsPages(t *testing.T) {
	l, mnt := mount(t)
	f, err := os.Create(filepath.Join(mnt, "f"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(bytes.Repeat([]byte("a"), 3*pageSize)); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(bytes.Repeat([]byte("b"), 2*pageSize), 0); err != nil { // pages 0 and 1
		t.Fatal(err)
	}
	l.SetFault(&Fault{Op: OpFsync, N: 1, Suffix: "f"})
	if err := f.Sync(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("armed fsync: %v, want EIO", err)
	}
	if _, err := f.WriteAt([]byte("c"), pageSize); err != nil { // page 1 written again
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := l.Crash(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(l.Dir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	if got[0] != 'a' || got[pageSize] != 'c' || got[pageSize+1] != 'b' || got[2*pageSize] != 'a' {
		t.Fatalf("after the cut: page 0 starts %q, page 1 %q, page 2 %q; want a (lost), cb (rewritten), a", got[0], got[pageSize:pageSize+2], got[2*pageSize])
	}
}

func TestFaultSuffix(t *testing.T) {
	l, mnt := mount(t)
	a, err := os.Create(filepath.Join(mnt, "x.mem"))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := os.Create(filepath.Join(mnt, "x.vlog"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	l.SetFault(&Fault{Op: OpFsync, N: 1, Suffix: ".mem"})
	if err := b.Sync(); err != nil {
		t.Fatalf("fsync of a file the fault does not name: %v", err)
	}
	if err := a.Sync(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("first fsync of a .mem file: %v, want EIO", err)
	}
}

func TestHoldFsyncs(t *testing.T) {
	l, mnt := mount(t)
	f, err := os.Create(filepath.Join(mnt, "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	l.HoldFsyncs()
	done := make(chan error, 1)
	go func() { done <- f.Sync() }()
	poll.WaitFor(t, "the fsync to reach the layer", func() bool { return l.HeldFsyncs() > 0 })
	select {
	case err := <-done:
		t.Fatalf("fsync returned while held: %v", err)
	default:
	}
	l.ReleaseFsyncs()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestFsyncDelay: with a delay set every fsync takes at least that long,
// fsyncs on several files wait side by side rather than in turn, and the
// delay goes when it is set back to 0.
func TestFsyncDelay(t *testing.T) {
	l, mnt := mount(t)
	const delay = 200 * time.Millisecond
	const files = 4
	fs := make([]*os.File, files)
	for i := range fs {
		f, err := os.Create(filepath.Join(mnt, fmt.Sprintf("f%d.%c", i, 'a'+i%2)))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		fs[i] = f
	}
	l.SetFsyncDelay(delay)
	start := time.Now()
	if err := fs[0].Sync(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < delay {
		t.Fatalf("fsync with a %v delay took %v", delay, took)
	}
	start = time.Now()
	errs := make(chan error, files)
	for _, f := range fs {
		go func() { errs <- f.Sync() }()
	}
	for range files {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if took := time.Since(start); took < delay || took >= files*delay {
		t.Fatalf("%d concurrent fsyncs with a %v delay took %v: want at least one delay and less than one per file", files, delay, took)
	}
	l.SetFsyncDelay(0)
	start = time.Now()
	if err := fs[1].Sync(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took >= delay {
		t.Fatalf("fsync with the delay off took %v", took)
	}
	if got := l.Stats().Fsyncs; got != files+2 {
		t.Fatalf("layer counted %d fsyncs, want %d", got, files+2)
	}
	// f0 and f2 end in .a, f1 and f3 in .b; f0 and f1 were synced twice.
	if got := fmt.Sprint(l.Stats().FsyncsBy); got != "map[.a:3 .b:3]" {
		t.Fatalf("fsyncs by extension: %s, want 3 of .a files and 3 of .b", got)
	}
}

func TestRemountSeesCutState(t *testing.T) {
	l, mnt := mount(t)
	if err := os.WriteFile(filepath.Join(mnt, "a"), []byte("unsynced"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Crash(); err != nil {
		t.Fatal(err)
	}
	remount(t, l, mnt)
	b, err := os.ReadFile(filepath.Join(mnt, "a"))
	if err != nil || len(b) != 0 {
		t.Fatalf("after cut and remount: %q %v, want an empty file", b, err)
	}
}

// A cut while a file is still open (as a killed process's mapped files
// are, until the kernel lets go of them) waits for it to be closed: the
// mount is detached at once, writes through the open file still reach the
// layer, and only then are files rolled back to their last fsync.
func TestCrashWaitsForOpenFiles(t *testing.T) {
	l, mnt := mount(t)
	path := filepath.Join(mnt, "f")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write([]byte("synced")); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte(" unsynced")); err != nil {
		t.Fatal(err)
	}
	if h, want := Holders(mnt), fmt.Sprintf("pid %d ", os.Getpid()); !strings.Contains(h, want) || !strings.Contains(h, "fd f") {
		t.Fatalf("Holders = %q, want %q holding fd f", h, want)
	}
	type result struct {
		st  Stats
		err error
	}
	done := make(chan result, 1)
	go func() { st, err := l.Crash(); done <- result{st, err} }()
	poll.WaitFor(t, "the busy mount to be detached", func() bool { return !mounted(t, mnt) })
	select {
	case r := <-done:
		t.Fatalf("the cut returned while a file was still open: %+v %v", r.st, r.err)
	default:
	}
	if _, err := f.Write([]byte(" late")); err != nil {
		t.Fatalf("a write through the detached layer: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	var r result
	select {
	case r = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the cut did not end after the last file was closed")
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.st.CutBytes != int64(len(" unsynced late")) {
		t.Errorf("cut %d bytes, want %d (both writes after the fsync)", r.st.CutBytes, len(" unsynced late"))
	}
	got, err := os.ReadFile(filepath.Join(l.Dir(), "f"))
	if err != nil || string(got) != "synced" {
		t.Fatalf("after the cut the file holds %q (%v), want %q", got, err, "synced")
	}
}

// mounted reports whether mnt is a mount point in this process's namespace.
func mounted(t *testing.T, mnt string) bool {
	t.Helper()
	info, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(info), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == mnt {
			return true
		}
	}
	return false
}
