// Command loadgen writes events to a Linli edge from many goroutines and
// prints "seq marker" for every write answered 2xx, so that a test built
// with the race detector can drive heavy load from an uninstrumented
// process and still keep its exactly-once ledger (testkit.RunLoadgen).
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"linli/shared/test/loadgen"
)

func main() {
	url := flag.String("url", "", "edge base URL")
	kind := flag.String("kind", "checkin", "checkin, reading, access or mix (access events and readings in turn)")
	n := flag.Int64("n", 1000, "writes to make")
	workers := flag.Int("workers", 16, "concurrent writers")
	prefix := flag.String("prefix", "L", "marker prefix")
	flag.Parse()
	if err := run(os.Stdout, *url, *kind, *prefix, *n, *workers); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

// printer is a ledger that prints every answered write for the test's
// own ledger to read.
type printer struct {
	mu  sync.Mutex
	out *bufio.Writer
}

func (p *printer) Tried(string) {}

func (p *printer) Record(_ string, seq uint64, marker string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.out, "%d %s\n", seq, marker)
}

func run(stdout io.Writer, url, kind, prefix string, n int64, workers int) error {
	kinds := map[string][]string{
		"checkin": {loadgen.Checkin}, "reading": {loadgen.Reading}, "access": {loadgen.Access},
		"mix": {loadgen.Access, loadgen.Reading}}[kind]
	if kinds == nil || url == "" || workers <= 0 {
		return fmt.Errorf("want -url, -workers > 0 and -kind checkin, reading, access or mix")
	}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		MaxIdleConns: workers, MaxIdleConnsPerHost: workers}}
	out := &printer{out: bufio.NewWriterSize(stdout, 1<<20)}
	var failed atomic.Int64
	loadgen.Go(context.Background(), loadgen.Config{Workers: workers, Max: n}, func(ctx context.Context, _ int, i int64) bool {
		w, err := loadgen.Write(ctx, client, url, "", out, kinds[int(i)%len(kinds)], prefix, i)
		if err != nil || w.Code/100 != 2 {
			failed.Add(1)
		}
		return true
	}).Wait()
	if err := out.out.Flush(); err != nil {
		return err
	}
	if f := failed.Load(); f > 0 {
		fmt.Fprintf(os.Stderr, "loadgen: %d writes failed\n", f)
	}
	return nil
}
