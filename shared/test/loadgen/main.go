// Command loadgen writes events to a Linli edge from many goroutines and
// prints "seq marker" for every write answered 201, so that a test built
// with the race detector can drive heavy load from an uninstrumented
// process and still keep its exactly-once ledger (testkit.RunLoadgen).
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	url := flag.String("url", "", "edge base URL")
	kind := flag.String("kind", "checkin", "checkin, reading, access or mix (access events and readings in turn)")
	n := flag.Int64("n", 1000, "writes to make")
	workers := flag.Int("workers", 16, "concurrent writers")
	prefix := flag.String("prefix", "L", "marker prefix")
	flag.Parse()
	if err := run(*url, *kind, *prefix, *n, *workers); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func run(url, kind, prefix string, n int64, workers int) error {
	paths := map[string]string{"checkin": "/api/v1/checkins", "reading": "/api/v1/readings", "access": "/api/v1/access", "mix": ""}
	if _, ok := paths[kind]; !ok || url == "" {
		return fmt.Errorf("want -url and -kind checkin, reading, access or mix")
	}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		MaxIdleConns: workers, MaxIdleConnsPerHost: workers}}
	out := bufio.NewWriterSize(os.Stdout, 1<<20)
	var mu sync.Mutex
	var next, failed atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > n {
					return
				}
				marker := prefix + strconv.FormatInt(i, 10)
				k := kind
				if k == "mix" {
					k = []string{"access", "reading"}[i%2]
				}
				var body any
				switch k {
				case "checkin":
					body = map[string]string{"resident": marker, "activity": "A1"}
				case "reading":
					body = map[string]any{"sensor": marker, "kind": "temperature", "value": 21.5}
				case "access":
					// The door carries the marker: a posted card is stored only as its pseudonym.
					body = map[string]string{"door": marker, "credential": "C" + strconv.FormatInt(i, 10), "result": "granted"}
				}
				seq, err := post(context.Background(), client, url+paths[k], body)
				if err != nil {
					failed.Add(1)
					continue
				}
				mu.Lock()
				fmt.Fprintf(out, "%d %s\n", seq, marker)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if err := out.Flush(); err != nil {
		return err
	}
	if f := failed.Load(); f > 0 {
		fmt.Fprintf(os.Stderr, "loadgen: %d writes failed\n", f)
	}
	return nil
}

func post(ctx context.Context, c *http.Client, url string, body any) (uint64, error) {
	data, err := json.Marshal(body)
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(data))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusCreated {
		return 0, fmt.Errorf("%s: %s", resp.Status, raw)
	}
	var ans struct {
		Seq uint64 `json:"seq"`
	}
	if err := json.Unmarshal(raw, &ans); err != nil {
		return 0, err
	}
	return ans.Seq, nil
}
