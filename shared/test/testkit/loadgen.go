package testkit

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"linli/shared/test/process"
)

var (
	loadgenOnce sync.Once
	loadgenBin  string
	loadgenErr  error
)

// RunLoadgen makes n writes of kind ("checkin", "reading", "access" or
// "mix" of access events and readings) to e from
// workers goroutines of a separate, uninstrumented process (cmd loadgen),
// records every 201 in ledger and returns how many there were. Tests built
// with -race use it for bulk load: an instrumented HTTP client is several
// times slower than the edge it drives.
func RunLoadgen(t testing.TB, e *Edge, ledger *Ledger, kind, prefix string, n int64, workers int) int64 {
	t.Helper()
	loadgenOnce.Do(func() {
		dir, err := os.MkdirTemp("", "linli-loadgen-")
		if err != nil {
			loadgenErr = err
			return
		}
		loadgenErr = process.Build(Root(), dir, "./shared/test/loadgen/cmd/loadgen")
		loadgenBin = filepath.Join(dir, "loadgen")
	})
	if loadgenErr != nil {
		t.Fatal(loadgenErr)
	}
	cmd := exec.Command(loadgenBin, "-url", e.URL, "-kind", kind, "-prefix", prefix,
		"-n", strconv.FormatInt(n, 10), "-workers", strconv.Itoa(workers))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("loadgen: %v: %s", err, stderr.String())
	}
	var ok int64
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		seqText, marker, found := strings.Cut(sc.Text(), " ")
		seq, perr := strconv.ParseUint(seqText, 10, 64)
		if !found || perr != nil {
			t.Fatalf("loadgen printed %q", sc.Text())
		}
		ledger.Tried(e.ID)
		ledger.Record(e.ID, seq, marker)
		ok++
	}
	if s := stderr.String(); s != "" {
		t.Logf("%s", strings.TrimSpace(s))
	}
	return ok
}
