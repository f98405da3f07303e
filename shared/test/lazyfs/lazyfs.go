// Package lazyfs is a FUSE passthrough file system for fault tests: it keeps
// what each file had at its last fsync so that a simulated power cut can
// throw away every write since (the model of LazyFS), it can fail the Nth
// write or fsync with EIO, and it can hold fsyncs to show who waits on them.
//
// It can also make every fsync take a fixed time (SetFsyncDelay), the
// latency of a slow disk's cache flush, for benchmarks of durable writes.
//
// Writes go through to a directory on the host at once; for every file
// touched since its last fsync the layer keeps an undo record (its size and
// the original content of each page overwritten). Crash unmounts the layer
// and applies the undo records, so the directory holds exactly what was
// fsynced. Directory entries (create, rename, unlink) are not modelled: they
// survive a cut, as in LazyFS. Memory-mapped writes reach the layer as the
// kernel writes dirty pages back, and msync(MS_SYNC) reaches it as an fsync,
// so Badger's mmapped WAL and value log run on it unchanged.
//
// Mounting needs root (mount(2) with /dev/fuse). The process serving the
// layer must not memory-map files under the mount itself (a page fault it
// must serve can deadlock with Go's stop-the-world); run such writers, like
// the edge, in another process.
package lazyfs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

const pageSize = 4096

// Op is a file operation the layer can fail.
type Op int

// Operations that can be made to fail.
const (
	OpWrite Op = iota + 1
	OpFsync
)

func (o Op) String() string {
	switch o {
	case OpWrite:
		return "write"
	case OpFsync:
		return "fsync"
	}
	return fmt.Sprintf("op(%d)", int(o))
}

// Fault makes the Nth operation of a kind (counted from when it is set)
// fail with EIO; Persistent makes every later one fail too. With Suffix
// set, only operations on files whose name ends with it count and fail.
type Fault struct {
	Op         Op
	N          int
	Persistent bool
	Suffix     string
}

// Stats counts what the layer saw.
type Stats struct {
	Writes     int   // write requests (write(2) and mmap writeback)
	WriteBytes int64 // bytes written
	Fsyncs     int   // file fsyncs (fsync, fdatasync, msync)
	// FsyncsBy counts Fsyncs by the file name's extension (".mem",
	// ".vlog", ".jnl", …): which of a program's files its syncs went to.
	FsyncsBy    map[string]int
	Failed      int   // operations failed by a Fault
	CutFiles    int   // files rolled back by the last Crash
	CutBytes    int64 // bytes written since their file's last fsync, thrown away by the last Crash
	UndoPending int   // files with unsynced changes right now
}

// FS is a mounted layer.
type FS struct {
	dir, mnt string
	server   *fuse.Server

	mu   sync.Mutex
	undo map[uint64]*undo // by inode number in dir
	// lost holds, by inode, pages written before an fsync that failed and
	// not written since: as on Linux, whose failed writeback marks them
	// clean, no later fsync makes them durable. The value is the page at
	// the last good sync (nil: it was past the end, zeros after a cut).
	lost    map[uint64]map[int64][]byte
	stats   Stats
	fault   *Fault
	counts  map[Op]int
	hold    chan struct{} // non-nil while fsyncs are held
	holding int           // fsyncs waiting on hold
	delay   time.Duration // each fsync's added latency
}

// undo is what a file held at its last fsync.
type undo struct {
	size    int64
	pages   map[int64][]byte // page index → content at last fsync (pages below size)
	dirty   map[int64]bool   // pages written since the last fsync
	written int64            // bytes written since the last fsync
}

// Mount serves dir at mnt (both must exist) until Unmount or Crash.
func Mount(dir, mnt string) (*FS, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	l := &FS{dir: dir, mnt: mnt, undo: map[uint64]*undo{}, lost: map[uint64]map[int64][]byte{}, counts: map[Op]int{}}
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		return nil, fmt.Errorf("lazyfs: %w", err)
	}
	root := &gofs.LoopbackRoot{Path: dir, Dev: uint64(st.Dev)}
	// Children become nodes too through node.WrapChild.
	rootNode := &node{LoopbackNode: &gofs.LoopbackNode{RootData: root}, l: l}
	root.RootNode = rootNode
	zero := time.Duration(0)
	opts := &gofs.Options{
		MountOptions: fuse.MountOptions{
			DirectMountStrict: true, // root: mount(2) itself, no fusermount here
			FsName:            "lazyfs:" + dir,
			Name:              "lazyfs",
			DisableXAttrs:     true,
			MaxBackground:     64,
		},
		// The cut changes files behind the kernel's back only while
		// unmounted, but keep metadata fresh anyway: sizes matter here.
		AttrTimeout:  &zero,
		EntryTimeout: &zero,
	}
	l.server, err = gofs.Mount(mnt, rootNode, opts)
	if err != nil {
		return nil, fmt.Errorf("lazyfs: mount %s on %s: %w", dir, mnt, err)
	}
	return l, nil
}

// Dir is the host directory behind the mount.
func (l *FS) Dir() string { return l.dir }

// Unmount detaches the layer and keeps every write, synced or not (a clean
// shutdown: the host's page cache reaches its disk).
func (l *FS) Unmount() error {
	if l.server == nil {
		return nil
	}
	l.ReleaseFsyncs()
	// A process that has just been killed may still hold the mount for a
	// moment: the kernel drops the last references of the files it had
	// mapped (Badger maps its tables and logs) after the exit is reported,
	// from a work queue, and writes their dirty pages back through the
	// layer as it does. So a busy mount is detached lazily and the layer
	// keeps serving until the kernel has let go of the last file — only
	// then does the connection end, and only then may a cut roll files
	// back. A process still holding files after a minute is an error.
	err := l.server.Unmount()
	if err != nil && errors.Is(err, syscall.EBUSY) {
		if err = syscall.Unmount(l.mnt, syscall.MNT_DETACH); err == nil {
			served := make(chan struct{})
			go func() { l.server.Wait(); close(served) }()
			select {
			case <-served:
				l.server = nil
				return nil
			case <-time.After(time.Minute):
				l.server = nil
				return fmt.Errorf("lazyfs: %s detached but still in use a minute later (held by: %s)", l.mnt, Holders(l.mnt))
			}
		}
	}
	if err != nil {
		l.server = nil
		return fmt.Errorf("lazyfs: unmount %s (held by: %s): %w", l.mnt, Holders(l.mnt), err)
	}
	l.server.Wait()
	l.server = nil
	return nil
}

// Holders names the processes that hold something under mnt open, mapped,
// or as their working directory, from /proc ("none found" if none does:
// the kernel itself may still be releasing a dead process's files).
func Holders(mnt string) string {
	procs, _ := filepath.Glob("/proc/[0-9]*")
	under := func(p string) bool { return p == mnt || strings.HasPrefix(p, mnt+"/") }
	var found []string
	for _, proc := range procs {
		var what []string
		for _, link := range []string{"cwd", "root"} {
			if t, err := os.Readlink(filepath.Join(proc, link)); err == nil && under(t) {
				what = append(what, link)
			}
		}
		fds, _ := filepath.Glob(filepath.Join(proc, "fd", "*"))
		for _, fd := range fds {
			if t, err := os.Readlink(fd); err == nil && under(t) {
				what = append(what, "fd "+filepath.Base(t))
			}
		}
		if maps, err := os.ReadFile(filepath.Join(proc, "maps")); err == nil {
			for _, line := range strings.Split(string(maps), "\n") {
				if i := strings.Index(line, mnt); i >= 0 && under(strings.TrimSuffix(line[i:], " (deleted)")) {
					what = append(what, "map "+filepath.Base(line[i:]))
				}
			}
		}
		if len(what) > 0 {
			comm, _ := os.ReadFile(filepath.Join(proc, "comm"))
			stat, _ := os.ReadFile(filepath.Join(proc, "stat"))
			state := ""
			if f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:])); len(f) > 0 {
				state = f[0]
			}
			found = append(found, fmt.Sprintf("pid %s %s state %s: %s", filepath.Base(proc), strings.TrimSpace(string(comm)), state, strings.Join(what, ", ")))
		}
	}
	if len(found) == 0 {
		return "none found"
	}
	return strings.Join(found, "; ")
}

// Crash is a power cut: it detaches the layer (the writers must be dead,
// e.g. SIGKILLed) and rolls every file back to its content at its last
// fsync. It returns what it threw away.
func (l *FS) Crash() (Stats, error) {
	if err := l.Unmount(); err != nil {
		return Stats{}, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	files, discarded := 0, int64(0)
	err := filepath.WalkDir(l.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		var st syscall.Stat_t
		if err := syscall.Stat(path, &st); err != nil {
			return err
		}
		u, ok := l.undo[st.Ino]
		lost := l.lost[st.Ino]
		if !ok && lost == nil {
			return nil
		}
		delete(l.undo, st.Ino)
		delete(l.lost, st.Ino)
		files++
		size := st.Size
		if ok {
			discarded += u.written
			if err := u.apply(path); err != nil {
				return err
			}
			size = u.size
		}
		return applyLost(path, size, lost)
	})
	clear(l.undo)
	clear(l.lost)
	l.stats.CutFiles, l.stats.CutBytes = files, discarded
	if err != nil {
		return l.stats, fmt.Errorf("lazyfs: cut: %w", err)
	}
	return l.stats, nil
}

func (u *undo) apply(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	for idx, page := range u.pages {
		if _, err := f.WriteAt(page, idx*pageSize); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Truncate(u.size); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// applyLost puts back pages whose writeback failed.
func applyLost(path string, size int64, lost map[int64][]byte) error {
	if len(lost) == 0 {
		return nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	for idx, page := range lost {
		off := idx * pageSize
		if off >= size {
			continue
		}
		if page == nil {
			page = make([]byte, min(pageSize, size-off))
		}
		if _, err := f.WriteAt(page[:min(int64(len(page)), size-off)], off); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

// SetFault arms a fault (nil disarms); counting starts now.
func (l *FS) SetFault(f *Fault) {
	l.mu.Lock()
	l.fault = f
	clear(l.counts)
	l.mu.Unlock()
}

// Stats returns the counters.
func (l *FS) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.stats
	s.FsyncsBy = maps.Clone(l.stats.FsyncsBy)
	s.UndoPending = len(l.undo)
	return s
}

// SetFsyncDelay makes every later fsync take d before it answers (0: none),
// as a disk whose flush takes d would. Concurrent fsyncs wait side by side,
// not one after the other: a device flushes its cache for all of them.
func (l *FS) SetFsyncDelay(d time.Duration) {
	l.mu.Lock()
	l.delay = max(d, 0)
	l.mu.Unlock()
}

// HoldFsyncs makes every fsync wait until ReleaseFsyncs.
func (l *FS) HoldFsyncs() {
	l.mu.Lock()
	if l.hold == nil {
		l.hold = make(chan struct{})
	}
	l.mu.Unlock()
}

// ReleaseFsyncs lets held fsyncs go on.
func (l *FS) ReleaseFsyncs() {
	l.mu.Lock()
	if l.hold != nil {
		close(l.hold)
		l.hold = nil
	}
	l.mu.Unlock()
}

// HeldFsyncs is how many fsyncs are waiting on HoldFsyncs.
func (l *FS) HeldFsyncs() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.holding
}

// fail counts an operation on file name and says whether the armed fault
// fails it. Callers hold l.mu.
func (l *FS) fail(op Op, name string) bool {
	f := l.fault
	if f == nil || f.Op != op || !strings.HasSuffix(name, f.Suffix) {
		return false
	}
	l.counts[op]++
	n := l.counts[op]
	if n == f.N || (f.Persistent && n > f.N) {
		l.stats.Failed++
		return true
	}
	return false
}

// touch records fd's state before a change of [off, end) (a truncation to
// off when end is past the file). Callers hold l.mu.
func (l *FS) touch(fd int, off, end int64) (*undo, error) {
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return nil, err
	}
	u, ok := l.undo[st.Ino]
	if !ok {
		u = &undo{size: st.Size, pages: map[int64][]byte{}, dirty: map[int64]bool{}}
		l.undo[st.Ino] = u
	}
	end = min(end, u.size)
	for idx := off / pageSize; idx*pageSize < end; idx++ {
		if _, saved := u.pages[idx]; saved {
			continue
		}
		n := min(pageSize, u.size-idx*pageSize)
		buf := make([]byte, n)
		got, err := syscall.Pread(fd, buf, idx*pageSize)
		if err != nil {
			return nil, err
		}
		// A file shrunk since its last sync reads short: the part past
		// its current end was already saved or is zeros to restore.
		u.pages[idx] = buf[:max(got, 0)]
		if int64(got) < n {
			u.pages[idx] = append(u.pages[idx], make([]byte, n-int64(got))...)
		}
	}
	return u, nil
}

func (l *FS) synced(fd int) {
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err == nil {
		delete(l.undo, st.Ino)
	}
}

// syncFailed records the pages a failed fsync leaves behind for good.
func (l *FS) syncFailed(fd int) {
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return
	}
	u, ok := l.undo[st.Ino]
	if !ok {
		return
	}
	lost := l.lost[st.Ino]
	if lost == nil {
		lost = map[int64][]byte{}
		l.lost[st.Ino] = lost
	}
	for idx := range u.dirty {
		lost[idx] = u.pages[idx] // nil past the synced size
	}
	clear(u.dirty)
}

func (l *FS) forget(path string) {
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err == nil && st.Nlink <= 1 {
		l.mu.Lock()
		delete(l.undo, st.Ino)
		delete(l.lost, st.Ino)
		l.mu.Unlock()
	}
}

// node wraps the loopback node so that files it opens go through file.
type node struct {
	*gofs.LoopbackNode
	l *FS
}

// WrapChild makes every node the loopback creates below n a node of
// ours, so the whole tree goes through file.
func (n *node) WrapChild(_ context.Context, ops gofs.InodeEmbedder) gofs.InodeEmbedder {
	return &node{LoopbackNode: ops.(*gofs.LoopbackNode), l: n.l}
}

var (
	_ gofs.NodeWrapChilder = (*node)(nil)
	_ gofs.NodeOpener      = (*node)(nil)
	_ gofs.NodeCreater     = (*node)(nil)
	_ gofs.NodeSetattrer   = (*node)(nil)
	_ gofs.NodeUnlinker    = (*node)(nil)
)

func (n *node) hostPath(name string) string {
	return filepath.Join(n.RootData.Path, n.Path(n.Root()), name)
}

func (n *node) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_TRUNC != 0 {
		if errno := n.recordTruncate(0); errno != 0 {
			return nil, 0, errno
		}
	}
	fh, ff, errno := n.LoopbackNode.Open(ctx, flags)
	if errno != 0 {
		return nil, 0, errno
	}
	return &file{lf: fh.(*gofs.LoopbackFile), l: n.l, name: n.Path(n.Root())}, ff, 0
}

func (n *node) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	ino, fh, ff, errno := n.LoopbackNode.Create(ctx, name, flags, mode, out)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	f := &file{lf: fh.(*gofs.LoopbackFile), l: n.l, name: filepath.Join(n.Path(n.Root()), name)}
	// A new file has nothing synced: it is empty after a cut.
	n.l.mu.Lock()
	f.withFd(func(fd int) { _, _ = n.l.touch(fd, 0, 0) })
	n.l.mu.Unlock()
	return ino, f, ff, 0
}

func (n *node) Setattr(ctx context.Context, f gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if lf, ok := f.(*file); ok {
		return lf.Setattr(ctx, in, out)
	}
	if sz, ok := in.GetSize(); ok {
		if errno := n.recordTruncate(int64(sz)); errno != 0 {
			return errno
		}
	}
	return n.LoopbackNode.Setattr(ctx, f, in, out)
}

// recordTruncate saves what a truncation by path to size cuts off.
func (n *node) recordTruncate(size int64) syscall.Errno {
	fd, err := syscall.Open(n.hostPath(""), syscall.O_RDONLY, 0)
	if err != nil {
		return gofs.ToErrno(err)
	}
	defer syscall.Close(fd)
	n.l.mu.Lock()
	defer n.l.mu.Unlock()
	_, err = n.l.touch(fd, size, 1<<62)
	return gofs.ToErrno(err)
}

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	n.l.forget(n.hostPath(name))
	return n.LoopbackNode.Unlink(ctx, name)
}

// file is an open file of the layer.
type file struct {
	lf   *gofs.LoopbackFile
	l    *FS
	name string // path inside the mount when opened
}

var (
	_ gofs.FileReader    = (*file)(nil)
	_ gofs.FileWriter    = (*file)(nil)
	_ gofs.FileWritever  = (*file)(nil)
	_ gofs.FileFsyncer   = (*file)(nil)
	_ gofs.FileFlusher   = (*file)(nil)
	_ gofs.FileReleaser  = (*file)(nil)
	_ gofs.FileGetattrer = (*file)(nil)
	_ gofs.FileSetattrer = (*file)(nil)
	_ gofs.FileLseeker   = (*file)(nil)
	_ gofs.FileAllocater = (*file)(nil)
)

func (f *file) withFd(fn func(fd int)) {
	// PassthroughFd only reads the descriptor; the file is not handed to
	// the kernel (file does not implement FilePassthroughFder).
	if fd, ok := f.lf.PassthroughFd(); ok {
		fn(fd)
	}
}

func (f *file) Read(ctx context.Context, buf []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	return f.lf.Read(ctx, buf, off)
}

func (f *file) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	f.l.mu.Lock()
	if f.l.fail(OpWrite, f.name) {
		f.l.mu.Unlock()
		return 0, syscall.EIO
	}
	var err error
	f.withFd(func(fd int) {
		var u *undo
		if u, err = f.l.touch(fd, off, off+int64(len(data))); err == nil {
			u.written += int64(len(data))
			var st syscall.Stat_t
			lost := map[int64][]byte(nil)
			if syscall.Fstat(fd, &st) == nil {
				lost = f.l.lost[st.Ino]
			}
			for idx := off / pageSize; idx*pageSize < off+int64(len(data)); idx++ {
				u.dirty[idx] = true
				delete(lost, idx) // written again: its next sync counts
			}
		}
	})
	f.l.stats.Writes++
	f.l.stats.WriteBytes += int64(len(data))
	if err != nil {
		f.l.mu.Unlock()
		return 0, gofs.ToErrno(err)
	}
	// The write happens under the lock so a concurrent cut or fsync sees
	// undo records and data agree.
	n, errno := f.lf.Write(ctx, data, off)
	f.l.mu.Unlock()
	return n, errno
}

func (f *file) Writev(ctx context.Context, data [][]byte, off int64) (uint32, syscall.Errno) {
	var buf []byte
	for _, d := range data {
		buf = append(buf, d...)
	}
	return f.Write(ctx, buf, off)
}

func (f *file) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	f.l.mu.Lock()
	hold, delay := f.l.hold, f.l.delay
	if hold != nil {
		f.l.holding++
	}
	f.l.mu.Unlock()
	if delay > 0 {
		// The simulated device's flush. Not cut short when the caller is
		// interrupted (the Go runtime's preemption signals interrupt
		// syscalls all the time): a disk does not fail a flush with EINTR,
		// and Badger would take it for a failed write.
		time.Sleep(delay)
	}
	if hold != nil {
		<-hold
		f.l.mu.Lock()
		f.l.holding--
		f.l.mu.Unlock()
	}
	f.l.mu.Lock()
	defer f.l.mu.Unlock()
	if f.l.fail(OpFsync, f.name) {
		f.withFd(func(fd int) { f.l.syncFailed(fd) })
		return syscall.EIO
	}
	f.l.stats.Fsyncs++
	if f.l.stats.FsyncsBy == nil {
		f.l.stats.FsyncsBy = map[string]int{}
	}
	f.l.stats.FsyncsBy[filepath.Ext(f.name)]++
	// The host's own durability is not what is modelled: skip its fsync.
	f.withFd(func(fd int) { f.l.synced(fd) })
	return 0
}

func (f *file) Flush(ctx context.Context) syscall.Errno   { return f.lf.Flush(ctx) }
func (f *file) Release(ctx context.Context) syscall.Errno { return f.lf.Release(ctx) }
func (f *file) Getattr(ctx context.Context, out *fuse.AttrOut) syscall.Errno {
	return f.lf.Getattr(ctx, out)
}

func (f *file) Setattr(ctx context.Context, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if sz, ok := in.GetSize(); ok {
		f.l.mu.Lock()
		var err error
		f.withFd(func(fd int) { _, err = f.l.touch(fd, int64(sz), 1<<62) })
		if err != nil {
			f.l.mu.Unlock()
			return gofs.ToErrno(err)
		}
		errno := f.lf.Setattr(ctx, in, out)
		f.l.mu.Unlock()
		return errno
	}
	return f.lf.Setattr(ctx, in, out)
}

func (f *file) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	return f.lf.Lseek(ctx, off, whence)
}

func (f *file) Allocate(ctx context.Context, off, size uint64, mode uint32) syscall.Errno {
	f.l.mu.Lock()
	defer f.l.mu.Unlock()
	var err error
	f.withFd(func(fd int) { _, err = f.l.touch(fd, int64(off), int64(off+size)) })
	if err != nil {
		return gofs.ToErrno(err)
	}
	return f.lf.Allocate(ctx, off, size, mode)
}

// ErrNotRoot is returned by Available when mounting is impossible here.
var ErrNotRoot = errors.New("lazyfs needs root and /dev/fuse")

// Available reports whether this process can mount the layer.
func Available() error {
	if os.Geteuid() != 0 {
		return ErrNotRoot
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return fmt.Errorf("%w: %v", ErrNotRoot, err)
	}
	return nil
}
