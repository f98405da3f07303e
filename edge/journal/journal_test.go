package journal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func rec(first, last uint64) Record {
	r := Record{First: first, Last: last}
	for s := first; s <= last; s++ {
		r.Events = append(r.Events, fmt.Appendf(nil, "event %d", s))
	}
	return r
}

func open(t *testing.T, dir string, segSize int64) (*Journal, []Record) {
	t.Helper()
	var recs []Record
	j, err := Open(Options{Dir: dir, SegmentSize: segSize}, func(r Record) error {
		for i, e := range r.Events {
			r.Events[i] = slices.Clone(e) // valid only during the call
		}
		recs = append(recs, r)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = j.Close() })
	return j, recs
}

func ranges(recs []Record) [][2]uint64 {
	var out [][2]uint64
	for _, r := range recs {
		out = append(out, [2]uint64{r.First, r.Last})
	}
	return out
}

func segFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*"+suffix))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(m)
	return m
}

func TestRecordsComeBackInOrderAcrossSegments(t *testing.T) {
	dir := t.TempDir()
	j, recs := open(t, dir, 1) // every record fills a segment
	if len(recs) != 0 {
		t.Fatalf("new journal: %d records", len(recs))
	}
	want := []Record{rec(1, 3), rec(4, 4), rec(5, 9)}
	for _, r := range want {
		if err := j.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if n := len(segFiles(t, dir)); n != 3 {
		t.Fatalf("%d segments, want 3 (one per record at this segment size)", n)
	}
	_, got := open(t, dir, 1)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("read back %v, want %v", ranges(got), ranges(want))
	}
}

// A segment's records end at its first torn or corrupt frame; later
// segments are still read.
func TestTornAndCorruptTails(t *testing.T) {
	for _, c := range []struct {
		name string
		harm func(data []byte) []byte
	}{
		{"torn", func(b []byte) []byte { return b[:len(b)-5] }},
		{"length only", func(b []byte) []byte { return b[:len(b)-len(encode(nil, rec(4, 5)))+3] }},
		{"flipped byte", func(b []byte) []byte { b[len(b)-2] ^= 0x40; return b }},
		{"zeros", func(b []byte) []byte { return append(b, make([]byte, 4096)...) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			j, _ := open(t, dir, 1<<20)
			for _, r := range []Record{rec(1, 3), rec(4, 5)} {
				if err := j.Append(r); err != nil {
					t.Fatal(err)
				}
			}
			_ = j.Close()
			seg := segFiles(t, dir)[0]
			data, err := os.ReadFile(seg)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(seg, c.harm(data), 0o600); err != nil {
				t.Fatal(err)
			}
			j2, got := open(t, dir, 1<<20)
			want := [][2]uint64{{1, 3}, {4, 5}}
			if c.name != "zeros" {
				want = want[:1]
			}
			if fmt.Sprint(ranges(got)) != fmt.Sprint(want) {
				t.Fatalf("read back %v, want %v", ranges(got), want)
			}
			// New records go to a new segment, after the damaged one.
			if err := j2.Append(rec(4, 4)); err != nil {
				t.Fatal(err)
			}
			_ = j2.Close()
			_, got = open(t, dir, 1<<20)
			if r := ranges(got); r[len(r)-1] != [2]uint64{4, 4} {
				t.Fatalf("after the damaged segment: %v", r)
			}
		})
	}
}

// Release deletes what is released, but never the segment being written
// nor the newest one with a synced record (the highest seq journaled).
func TestReleaseKeepsTheHighestSeq(t *testing.T) {
	dir := t.TempDir()
	j, _ := open(t, dir, 1)
	for _, r := range []Record{rec(1, 3), rec(4, 6), rec(7, 9)} {
		if err := j.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		upto uint64
		want int
	}{{0, 3}, {3, 2}, {5, 2}, {6, 1}, {100, 1}} {
		if err := j.Release(c.upto); err != nil {
			t.Fatal(err)
		}
		if n := len(segFiles(t, dir)); n != c.want || j.Segments() != c.want {
			t.Fatalf("release up to %d: %d files, %d known, want %d", c.upto, n, j.Segments(), c.want)
		}
	}
	// Closed, the last segment is still the one with the highest seq.
	_ = j.Close()
	j2, got := open(t, dir, 1)
	if err := j2.Release(100); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(ranges(got)) != "[[7 9]]" || len(segFiles(t, dir)) != 1 {
		t.Fatalf("after reopening: %v, %d files", ranges(got), len(segFiles(t, dir)))
	}
	if err := j2.Append(rec(10, 10)); err != nil {
		t.Fatal(err)
	}
	if err := j2.Release(100); err != nil {
		t.Fatal(err)
	}
	if _, got := open(t, dir, 1); fmt.Sprint(ranges(got)) != "[[10 10]]" {
		t.Fatalf("after a newer record: %v", ranges(got))
	}
}

func TestAppendAfterClose(t *testing.T) {
	j, _ := open(t, t.TempDir(), 0)
	_ = j.Close()
	if err := j.Append(rec(1, 1)); err == nil {
		t.Fatal("append after close succeeded")
	}
}

// Open stops at the first error its visitor returns, and says so.
func TestOpenStopsOnVisitError(t *testing.T) {
	dir := t.TempDir()
	j, _ := open(t, dir, 1)
	for _, r := range []Record{rec(1, 1), rec(2, 2), rec(3, 3)} {
		if err := j.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	_ = j.Close()
	stop := errors.New("enough")
	seen := 0
	_, err := Open(Options{Dir: dir}, func(r Record) error {
		seen++
		if r.First == 2 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || seen != 2 {
		t.Fatalf("Open returned %v after %d records, want the visitor's error after 2", err, seen)
	}
}
