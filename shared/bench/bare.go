package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"linli/shared/test/process"
)

// bareEnv makes linli-bench a bare HTTP server instead (see serveBare).
const bareEnv = "LINLI_BENCH_BARE_HTTP"

// serveBare answers every request as the edge answers a durable write —
// 201, the same headers and a body of the same shape — with nothing in
// between: no decoding, no store. Run as its own process under the ingest
// load, it measures what net/http and loopback TCP alone let this machine
// serve, the ceiling any edge built on them can approach.
func serveBare(ctx context.Context, addr string, stdout io.Writer) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("bare http: %w", err)
	}
	var seq atomic.Uint64
	srv := &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet { // the harness's readiness check
				_, _ = io.WriteString(w, "{}\n")
				return
			}
			if _, err := io.Copy(io.Discard, r.Body); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			n := seq.Add(1)
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusCreated)
			b := make([]byte, 0, 64)
			b = append(b, `{"id":"bare.`...)
			b = strconv.AppendUint(b, n, 10)
			b = append(b, `","seq":`...)
			b = strconv.AppendUint(b, n, 10)
			b = append(b, "}\n"...)
			_, _ = w.Write(b)
		}),
	}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	fmt.Fprintf(stdout, "bare http serving on %s\n", ln.Addr())
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("bare http: %w", err)
	}
	return nil
}

// bareAddr is the address in env that asks for serveBare, or "".
func bareAddr(env []string) string {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, bareEnv+"="); ok {
			return v
		}
	}
	return ""
}

// startBare runs this binary again as a bare HTTP server on a free port.
func startBare(ctx context.Context, dir string) (*proc, string, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, "", err
	}
	addr, err := process.FreeAddr()
	if err != nil {
		return nil, "", err
	}
	p, err := startProc(dir, "bare-http", self, nil, bareEnv+"="+addr)
	if err != nil {
		return nil, "", err
	}
	url := "http://" + addr
	if err := waitHTTP(ctx, url+"/", p); err != nil {
		p.Kill()
		return nil, "", fmt.Errorf("bare http: %w", err)
	}
	return p, url, nil
}
