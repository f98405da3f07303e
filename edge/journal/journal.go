// Package journal is the outbox's write-ahead log: each group commit of
// events is appended to a segment file as one length- and CRC-framed
// record and synced with one fdatasync, so an answer to a writer costs
// one sync of one file. Badger, where the events then go, syncs two logs
// per commit one after the other; the journal takes that off the path a
// writer waits on. Segments are read back in order at start, each up to
// its first torn or corrupt record, and deleted once their caller says
// what they hold is safe elsewhere (Release).
package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// suffix names segment files: <16 hex digits of the segment number>.jnl.
const suffix = ".jnl"

// DefaultSegmentSize is the size after which the next record starts a new
// segment: small enough that released events free their disk soon, large
// enough that the directory sync of a new segment is rare.
const DefaultSegmentSize = 4 << 20

// header is a record's frame: payload length and CRC-32C of the payload.
const header = 8

// maxRecord bounds a record's payload; a longer length read back is a
// torn or corrupt frame, not an allocation to attempt.
const maxRecord = 64 << 20

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Options configure a Journal.
type Options struct {
	Dir         string
	SegmentSize int64 // default DefaultSegmentSize
	// UnsafeNoSync skips the fdatasync of each record. Test-only: the
	// power-cut suite's negative control shows that its check catches an
	// answer given before the journal is on disk.
	UnsafeNoSync bool
	Logger       *slog.Logger
}

// Record is one group commit: the events numbered First..Last, each as
// the caller encoded it.
type Record struct {
	First, Last uint64
	Events      [][]byte
}

// segment is what the journal knows of one file.
type segment struct {
	num    uint64
	maxSeq uint64 // highest Last of any record written to it, synced or not
	synced bool   // at least one record in it was synced whole
}

// Journal is an open journal. Append, Release and Close are safe for
// concurrent use.
type Journal struct {
	opts Options
	log  *slog.Logger

	mu     sync.Mutex
	segs   []segment // in order; the last is the one written to, if f is open
	f      *os.File  // the segment being written; nil until the next Append opens one
	size   int64
	closed bool
	buf    []byte
}

// Open opens the journal in opts.Dir (creating it) and hands visit the
// records of its segments in the order they were written, one segment in
// memory at a time: a journal left long unreleased (an edge offline for
// days) is not read into memory whole. A record's Events are valid only
// during the call. A segment's records end at its first torn or corrupt
// frame: a crash mid-write leaves one at the tail, and a failed write
// leaves its segment for a new one. New records go to a new segment.
func Open(opts Options, visit func(Record) error) (*Journal, error) {
	if opts.SegmentSize <= 0 {
		opts.SegmentSize = DefaultSegmentSize
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create journal dir: %w", err)
	}
	// The directory's own entry must survive a power cut too.
	if err := syncDir(filepath.Dir(filepath.Clean(opts.Dir))); err != nil {
		return nil, fmt.Errorf("sync journal's parent dir: %w", err)
	}
	j := &Journal{opts: opts, log: opts.Logger}
	nums, err := j.segmentNumbers()
	if err != nil {
		return nil, err
	}
	for _, n := range nums {
		s := segment{num: n}
		err := j.readSegment(n, func(r Record) error {
			s.synced = true
			s.maxSeq = max(s.maxSeq, r.Last)
			return visit(r)
		})
		if err != nil {
			return nil, err
		}
		j.segs = append(j.segs, s)
	}
	return j, nil
}

func (j *Journal) segmentNumbers() ([]uint64, error) {
	entries, err := os.ReadDir(j.opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("list journal: %w", err)
	}
	var nums []uint64
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), suffix)
		if !ok || e.IsDir() {
			continue
		}
		n, err := strconv.ParseUint(name, 16, 64)
		if err != nil {
			continue // not ours
		}
		nums = append(nums, n)
	}
	slices.Sort(nums)
	return nums, nil
}

func (j *Journal) path(num uint64) string {
	return filepath.Join(j.opts.Dir, fmt.Sprintf("%016x%s", num, suffix))
}

// readSegment hands visit the whole records of segment num.
func (j *Journal) readSegment(num uint64, visit func(Record) error) error {
	data, err := os.ReadFile(j.path(num))
	if err != nil {
		return fmt.Errorf("read journal segment: %w", err)
	}
	for off := 0; off < len(data); {
		r, n, err := decode(data[off:])
		if err != nil {
			if off+header <= len(data) && !allZero(data[off:]) {
				j.log.Warn("journal segment ends in a torn or corrupt record; the rest of it is ignored",
					"segment", j.path(num), "offset", off, "bytes", len(data)-off, "err", err)
			}
			break
		}
		if err := visit(r); err != nil {
			return err
		}
		off += n
	}
	return nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

var errFrame = errors.New("bad record frame")

// decode reads one record from b and says how many bytes it took.
func decode(b []byte) (Record, int, error) {
	if len(b) < header {
		return Record{}, 0, fmt.Errorf("%w: %d bytes left", errFrame, len(b))
	}
	n := binary.BigEndian.Uint32(b)
	if n < 20 || n > maxRecord || int(n) > len(b)-header {
		return Record{}, 0, fmt.Errorf("%w: length %d", errFrame, n)
	}
	p := b[header : header+int(n)]
	if crc32.Checksum(p, castagnoli) != binary.BigEndian.Uint32(b[4:]) {
		return Record{}, 0, fmt.Errorf("%w: checksum", errFrame)
	}
	r := Record{First: binary.BigEndian.Uint64(p), Last: binary.BigEndian.Uint64(p[8:])}
	count := binary.BigEndian.Uint32(p[16:])
	p = p[20:]
	for range count {
		if len(p) < 4 || int(binary.BigEndian.Uint32(p)) > len(p)-4 {
			return Record{}, 0, fmt.Errorf("%w: event length", errFrame)
		}
		l := int(binary.BigEndian.Uint32(p))
		r.Events = append(r.Events, p[4:4+l:4+l])
		p = p[4+l:]
	}
	if len(p) != 0 || r.Last < r.First {
		return Record{}, 0, fmt.Errorf("%w: payload", errFrame)
	}
	return r, header + int(n), nil
}

// encode appends r's frame to dst.
func encode(dst []byte, r Record) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, header)...)
	dst = binary.BigEndian.AppendUint64(dst, r.First)
	dst = binary.BigEndian.AppendUint64(dst, r.Last)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(r.Events)))
	for _, e := range r.Events {
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(e)))
		dst = append(dst, e...)
	}
	p := dst[start+header:]
	binary.BigEndian.PutUint32(dst[start:], uint32(len(p)))
	binary.BigEndian.PutUint32(dst[start+4:], crc32.Checksum(p, castagnoli))
	return dst
}

// ErrClosed is returned by Append after Close.
var ErrClosed = errors.New("journal is closed")

// Append writes r as one record and syncs it. When it returns nil the
// record survives a power cut. An error means the record may or may not be
// on disk; the segment is then left (its tail may be torn) and the next
// record starts a new one.
func (j *Journal) Append(r Record) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return ErrClosed
	}
	if j.f == nil || j.size >= j.opts.SegmentSize {
		if err := j.rotate(); err != nil {
			return err
		}
	}
	j.buf = encode(j.buf[:0], r)
	cur := &j.segs[len(j.segs)-1]
	cur.maxSeq = max(cur.maxSeq, r.Last)
	if _, err := j.f.Write(j.buf); err != nil {
		j.abandon()
		return fmt.Errorf("write journal: %w", err)
	}
	j.size += int64(len(j.buf))
	if !j.opts.UnsafeNoSync {
		if err := datasync(j.f); err != nil {
			// The kernel may have dropped the pages that failed: nothing
			// more goes after them.
			j.abandon()
			return fmt.Errorf("sync journal: %w", err)
		}
	}
	cur.synced = true
	return nil
}

// abandon closes the current segment after a failed write or sync; it
// stays on disk for Open to read up to its first bad record.
func (j *Journal) abandon() {
	if err := j.f.Close(); err != nil {
		j.log.Warn("close abandoned journal segment", "err", err)
	}
	j.f = nil
}

// rotate closes the current segment and creates the next one, with its
// directory entry synced.
func (j *Journal) rotate() error {
	if j.f != nil {
		if err := j.f.Close(); err != nil {
			j.log.Warn("close journal segment", "err", err)
		}
		j.f = nil
	}
	var num uint64 = 1
	if len(j.segs) > 0 {
		num = j.segs[len(j.segs)-1].num + 1
	}
	f, err := os.OpenFile(j.path(num), os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("create journal segment: %w", err)
	}
	j.segs = append(j.segs, segment{num: num})
	if err := syncDir(j.opts.Dir); err != nil {
		_ = f.Close()
		return fmt.Errorf("sync journal dir: %w", err)
	}
	j.f, j.size = f, 0
	return nil
}

// Release deletes the segments whose every record numbers at most upto:
// the caller vouches that those events are safe elsewhere. The newest
// segment holding a synced record stays whatever upto says, so the
// highest number ever journaled is never forgotten; so does the segment
// being written.
func (j *Journal) Release(upto uint64) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	keep := -1 // the newest segment with a synced record
	for i := len(j.segs) - 1; i >= 0; i-- {
		if j.segs[i].synced {
			keep = i
			break
		}
	}
	var errs []error
	kept := j.segs[:0]
	for i, s := range j.segs {
		writing := j.f != nil && i == len(j.segs)-1
		if i >= keep || writing || s.maxSeq > upto {
			kept = append(kept, s)
			continue
		}
		if err := os.Remove(j.path(s.num)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
			kept = append(kept, s)
		}
	}
	j.segs = kept
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("release journal segments: %w", err)
	}
	return nil
}

// Segments is how many segment files the journal holds.
func (j *Journal) Segments() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.segs)
}

// Close closes the segment being written.
func (j *Journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return nil
	}
	j.closed = true
	if j.f == nil {
		return nil
	}
	err := j.f.Close()
	j.f = nil
	if err != nil {
		return fmt.Errorf("close journal: %w", err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	// Some file systems cannot sync a directory; the entry then rests on
	// the file system's own ordering, as for Badger's files.
	if errors.Is(err, syscall.EINVAL) {
		return nil
	}
	return err
}
