package kv

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// TrimMapped asks the kernel to page out the pages of Badger's table files
// (*.sst) and memtable write-ahead logs (*.mem) under dir that this process
// maps, with madvise(MADV_PAGEOUT), and returns how many bytes of mappings
// it went over.
//
// Badger reads its tables through memory maps, so every table page a drain
// touched stayed in the process's RSS until the process exited: an edge
// draining a 1,000,000-event backlog carried ~45 MiB of them on top of its
// heap. A drain reads each page about once, so giving them back costs
// little (a table read again is read from disk again). A write-ahead log is
// written through its map and only read again to replay it after a crash,
// yet each written page stayed resident until the memtable was flushed:
// up to 4 MiB per memtable on a small board.
//
// MADV_PAGEOUT is only a hint and never loses data: a clean file page is
// dropped, a dirty one written back first, and if the range was unmapped
// and reused between reading /proc/self/maps and the call (compaction
// deletes tables), whatever is there now keeps its contents. That is why
// it is used rather than MADV_DONTNEED, which zeroes private memory.
func TrimMapped(dir string) (int64, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return 0, fmt.Errorf("trim mapped tables: %w", err)
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return 0, fmt.Errorf("trim mapped tables: %w", err)
	}
	prefix := abs + string(filepath.Separator)
	var total int64
	sc := bufio.NewScanner(bytes.NewReader(maps))
	for sc.Scan() {
		// 7f2c5a600000-7f2c5a800000 rw-s 00000000 fd:01 1234 /data/000003.sst
		f := strings.Fields(sc.Text())
		if len(f) < 6 || !(strings.HasSuffix(f[5], ".sst") || strings.HasSuffix(f[5], ".mem")) || !strings.HasPrefix(f[5], prefix) || len(f[1]) < 4 || f[1][3] != 's' {
			continue
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, uintptr(start), uintptr(end-start), unix.MADV_PAGEOUT); errno != 0 {
			// The table may have been unmapped since /proc was read
			// (compaction deleted it): nothing to trim there.
			if errno == unix.ENOMEM {
				continue
			}
			if errno == unix.EINVAL {
				return total, ErrTrimUnsupported // a kernel before 5.4
			}
			return total, fmt.Errorf("trim mapped tables: madvise %s: %w", f[5], errno)
		}
		total += int64(end - start)
	}
	return total, sc.Err()
}

// ResidentFile is how many bytes of this process's resident memory are
// file-backed or shared (the third field of /proc/self/statm, which
// counts RssFile and RssShmem): the mapped tables, the binary's pages.
// Reading it is cheap enough to watch the tables' pages with.
func ResidentFile() (int64, error) {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0, fmt.Errorf("resident file pages: %w", err)
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return 0, fmt.Errorf("resident file pages: /proc/self/statm %q", b)
	}
	pages, err := strconv.ParseInt(f[2], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("resident file pages: /proc/self/statm %q: %w", b, err)
	}
	return pages * int64(os.Getpagesize()), nil
}
