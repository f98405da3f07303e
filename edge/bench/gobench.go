package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"
)

// goPkgs are the merge and codec hot paths measured with go test -bench.
var goPkgs = []string{"./shared/merge", "./shared/event", "./shared/wire"}

// goCount is how many times each benchmark runs (the long run: twice as
// many, each twice as long); the best run counts: noise on a shared
// machine only ever adds time.
const goCount = 3

// regression is the slowdown (or growth in allocations) that is flagged.
const regression = 1.10

var goHeader = []string{"benchmark", "ns/op", "previous", "change", "B/op", "allocs/op", "previous allocs", "verdict"}

// GoBench is one Go benchmark's best run and the previous run's numbers.
type GoBench struct {
	Name     string  `json:"name"`
	NsOp     float64 `json:"ns_op"`
	BytesOp  float64 `json:"bytes_op"`
	AllocsOp float64 `json:"allocs_op"`

	prev    *GoBench
	verdict Verdict
}

func (g GoBench) cells() []string {
	prev, change, prevAllocs := "–", "–", "–"
	if g.prev != nil {
		prev = fmtNs(g.prev.NsOp)
		change = fmt.Sprintf("%+.1f %%", (g.NsOp/g.prev.NsOp-1)*100)
		prevAllocs = strconv.FormatFloat(g.prev.AllocsOp, 'f', -1, 64)
	}
	v := g.verdict.String()
	if g.verdict == Fail {
		v = "REGRESSION"
	}
	return []string{g.Name, fmtNs(g.NsOp), prev, change, strconv.FormatFloat(g.BytesOp, 'f', -1, 64),
		strconv.FormatFloat(g.AllocsOp, 'f', -1, 64), prevAllocs, v}
}

func fmtNs(ns float64) string {
	switch {
	case ns >= 1e6:
		return fmt.Sprintf("%.2f ms", ns/1e6)
	case ns >= 1e3:
		return fmt.Sprintf("%.1f µs", ns/1e3)
	}
	return fmt.Sprintf("%.0f ns", ns)
}

// goBenchFile is what the harness keeps between runs.
type goBenchFile struct {
	Taken   time.Time `json:"taken"`
	Commit  string    `json:"commit"`
	Results []GoBench `json:"results"`
}

// goBench is scenario 7: the Go benchmarks of the merge and codec hot
// paths, compared with the previous run's numbers, which it then replaces.
func goBench(ctx context.Context, e *runEnv) error {
	args := append([]string{"test", "-run", "^$", "-bench", ".", "-benchmem",
		"-count", strconv.Itoa(e.pick(goCount, 2*goCount)), "-benchtime", e.pickDur(500*time.Millisecond, time.Second).String()}, goPkgs...)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = e.cfg.Root
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go %s: %v: %s", strings.Join(args, " "), err, oneLine(stderr.String()+out.String()))
	}
	results, err := parseGoBench(out.Bytes())
	if err != nil {
		return err
	}
	var prev goBenchFile
	if e.cfg.GoBench != "" {
		if b, err := os.ReadFile(e.cfg.GoBench); err == nil {
			if err := json.Unmarshal(b, &prev); err != nil {
				return fmt.Errorf("%s: %w", e.cfg.GoBench, err)
			}
		} else if !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	regressed := 0
	for i := range results {
		g := &results[i]
		g.verdict = Info
		for j := range prev.Results {
			if prev.Results[j].Name != g.Name {
				continue
			}
			g.prev = &prev.Results[j]
			g.verdict = Pass
			if g.NsOp > g.prev.NsOp*regression || g.AllocsOp > g.prev.AllocsOp*regression {
				g.verdict = Fail
				regressed++
			}
		}
	}
	e.res.GoRows, e.res.goCount = results, e.pick(goCount, 2*goCount)
	e.res.GoPrev = "none"
	if !prev.Taken.IsZero() {
		e.res.GoPrev = prev.Taken.Format("2006-01-02 15:04") + ", " + prev.Commit
	}
	e.res.add(Row{Scenario: "7 merge and codec", Figure: fmt.Sprintf("Go benchmarks (%s), regressions > 10 %% in time or allocations", strings.Join(goPkgs, ", ")),
		Value: fmt.Sprintf("%d of %d", regressed, len(results)), Baseline: "previous run: " + e.res.GoPrev, Target: "0", Verdict: verdict(regressed == 0)})
	if e.cfg.GoBench == "" {
		return nil
	}
	commit, err := exec.CommandContext(ctx, "git", "-C", e.cfg.Root, "describe", "--always", "--dirty").Output()
	if err != nil {
		commit = []byte("unknown")
	}
	data, err := json.MarshalIndent(goBenchFile{Taken: time.Now().UTC(), Commit: strings.TrimSpace(string(commit)), Results: results}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(e.cfg.GoBench, append(data, '\n'), 0o644)
}

// parseGoBench reads `go test -bench -benchmem` output and keeps each
// benchmark's best time (and its allocation figures).
func parseGoBench(out []byte) ([]GoBench, error) {
	best := map[string]*GoBench{}
	var order []string
	pkg := ""
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "pkg: linli/"); ok {
			pkg = p
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		name := pkg + "." + strings.TrimPrefix(f[0], "Benchmark")
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			name = name[:i] // the GOMAXPROCS suffix
		}
		g := GoBench{Name: name}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			switch f[i+1] {
			case "ns/op":
				g.NsOp = v
			case "B/op":
				g.BytesOp = v
			case "allocs/op":
				g.AllocsOp = v
			}
		}
		if g.NsOp == 0 {
			continue
		}
		if b, ok := best[name]; !ok {
			best[name] = &g
			order = append(order, name)
		} else if g.NsOp < b.NsOp {
			*b = g
		}
	}
	if len(best) == 0 {
		return nil, errors.New("go test -bench printed no results")
	}
	out2 := make([]GoBench, 0, len(order))
	for _, n := range order {
		out2 = append(out2, *best[n])
	}
	slices.SortStableFunc(out2, func(a, b GoBench) int { return strings.Compare(a.Name, b.Name) })
	return out2, nil
}
