// Package opstatus holds what the hub's and the edge's status commands
// share: fetching JSON and Prometheus text from a running process,
// progress bars, ages and the --watch loop.
package opstatus

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Client fetches from one running hub or edge.
type Client struct {
	Base  string // http(s)://host:port
	Token string // optional bearer token
	HTTP  *http.Client
}

// get fetches path; the status code comes back with the body.
func (c *Client) get(ctx context.Context, path string) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(c.Base, "/")+path, nil)
	if err != nil {
		return 0, nil, err
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	return resp.StatusCode, b, err
}

// JSON decodes path's 200 answer into v.
func (c *Client) JSON(ctx context.Context, path string, v any) error {
	code, b, err := c.get(ctx, path)
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return fmt.Errorf("GET %s: %d %s", path, code, strings.TrimSpace(string(b)))
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	return nil
}

// Readiness is GET /readyz: ready, and the reasons or warnings.
type Readiness struct {
	Ready    bool     `json:"ready"`
	Reasons  []string `json:"reasons"`
	Warnings []string `json:"warnings"`
}

// Ready reads /readyz (200 and 503 are both answers).
func (c *Client) Ready(ctx context.Context) (Readiness, error) {
	code, b, err := c.get(ctx, "/readyz")
	if err != nil {
		return Readiness{}, err
	}
	var r Readiness
	if code != http.StatusOK && code != http.StatusServiceUnavailable {
		return r, fmt.Errorf("GET /readyz: %d", code)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("GET /readyz: %w", err)
	}
	r.Ready = code == http.StatusOK
	return r, nil
}

// Metrics reads /metrics: each sample by its name as written, labels
// included (name{a="b"}).
func (c *Client) Metrics(ctx context.Context) (map[string]float64, error) {
	code, b, err := c.get(ctx, "/metrics")
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %d", code)
	}
	return ParseMetrics(strings.NewReader(string(b)))
}

// ParseMetrics reads Prometheus text format samples.
func ParseMetrics(r io.Reader) (map[string]float64, error) {
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		// The name (with its labels, which may hold spaces) ends at the
		// last '}' or the first space.
		cut := strings.LastIndexByte(l, '}') + 1
		if cut == 0 {
			cut = strings.IndexByte(l, ' ')
		}
		if cut <= 0 || cut >= len(l) {
			continue
		}
		fields := strings.Fields(l[cut:])
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			continue
		}
		out[l[:cut]] = v
	}
	return out, sc.Err()
}

// Bar is a text progress bar of done out of total, with the percentage.
func Bar(done, total uint64, width int) string {
	if total == 0 {
		done, total = 1, 1
	}
	done = min(done, total)
	frac := float64(done) / float64(total)
	n := int(math.Floor(frac * float64(width)))
	return "[" + strings.Repeat("#", n) + strings.Repeat("-", width-n) + "] " + fmt.Sprintf("%3.0f%%", math.Floor(frac*100))
}

// When is a time and how long ago (or ahead) it is, or "never".
func When(t time.Time, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	rel := Duration(d) + " ago"
	if d < 0 {
		rel = "in " + Duration(-d)
	}
	return t.UTC().Format(time.RFC3339) + " (" + rel + ")"
}

// Duration rounds d for people: 3d4h, 2h5m, 4m10s, 12s.
func Duration(d time.Duration) string {
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%dd%dh", int(d.Hours())/24, int(d.Hours())%24)
	case d >= time.Hour:
		return d.Round(time.Minute).String()
	default:
		return d.Round(time.Second).String()
	}
}

// Bytes is a size for people.
func Bytes(b uint64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%d B", b)
	}
	div, exp := uint64(unit), 0
	for n := b / unit; n >= unit; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(b)/float64(div), "KMGTPE"[exp])
}

// Run prints render's text once, or with every set, again every interval
// (clearing a terminal between frames) until ctx ends. A render error
// ends it: the caller prints it as its one line.
func Run(ctx context.Context, out io.Writer, every time.Duration, render func(context.Context) (string, error)) error {
	for first := true; ; first = false {
		text, err := render(ctx)
		if err != nil {
			if !first && ctx.Err() != nil {
				return nil // interrupted while watching
			}
			return err
		}
		if every > 0 {
			text = "\033[H\033[2J" + text // home and clear
		}
		if _, err := io.WriteString(out, text); err != nil {
			return err
		}
		if every <= 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(every):
		}
	}
}
