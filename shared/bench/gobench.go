package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// goPkgs are the merge and codec hot paths measured with go test -bench.
var goPkgs = []string{"./shared/merge", "./shared/event", "./shared/wire"}

// goCount is how many passes run every benchmark (the long run: twice as
// many, each longer); the best pass counts: noise on a shared machine only
// ever adds time.
const goCount = 5

// regression is the slowdown (or growth in allocations) that is flagged.
const regression = 1.10

var goHeader = []string{"benchmark", "ns/op", "previous", "change: calibrated (raw)", "B/op", "allocs/op", "previous allocs", "verdict"}

// GoBench is one Go benchmark's best run and the previous run's numbers.
type GoBench struct {
	Name     string  `json:"name"`
	NsOp     float64 `json:"ns_op"`
	BytesOp  float64 `json:"bytes_op"`
	AllocsOp float64 `json:"allocs_op"`

	prev    *GoBench
	speed   float64 // this run's calibration over the previous run's
	ab      string  // what running the previous code in turns showed
	verdict Verdict
}

func (g GoBench) cells() []string {
	prev, change, prevAllocs := "–", "–", "–"
	if g.prev != nil {
		prev = fmtNs(g.prev.NsOp)
		change = fmt.Sprintf("%+.1f %% (raw %+.1f %%)", (g.NsOp/g.speed/g.prev.NsOp-1)*100, (g.NsOp/g.prev.NsOp-1)*100)
		prevAllocs = strconv.FormatFloat(g.prev.AllocsOp, 'f', -1, 64)
	}
	v := g.verdict.String()
	if g.verdict == Fail {
		v = "REGRESSION"
	}
	if g.ab != "" {
		v += " (" + g.ab + ")"
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
	Taken  time.Time `json:"taken"`
	Commit string    `json:"commit"`
	// Calibration is the time of a fixed standard-library workload in the
	// same run: times are compared relative to it, so that a machine busy
	// with other work does not pass for a regression.
	Calibration float64   `json:"calibration_ns"`
	Results     []GoBench `json:"results"`
}

// calibrate times a fixed workload that no Linli code touches (JSON,
// SHA-256, sorting), best of three.
func calibrate() float64 {
	type rec struct {
		ID    string
		Seq   uint64
		Tags  []string
		Value float64
	}
	recs := make([]rec, 64)
	for i := range recs {
		recs[i] = rec{ID: "R" + strconv.Itoa(i*7919), Seq: uint64(i), Tags: []string{"a", "bb", "ccc"}, Value: float64(i) / 3}
	}
	data := make([]byte, 16<<10)
	for i := range data {
		data[i] = byte(i * 31)
	}
	ints := make([]int, 2048)
	best := math.Inf(1)
	for range 3 {
		r := testing.Benchmark(func(b *testing.B) {
			for b.Loop() {
				if _, err := json.Marshal(recs); err != nil {
					b.Fatal(err)
				}
				sha256.Sum256(data)
				for i := range ints {
					ints[i] = (i * 2654435761) % 10007
				}
				slices.Sort(ints)
			}
		})
		best = min(best, float64(r.NsPerOp()))
	}
	return best
}

// goBench is scenario 7: the Go benchmarks of the merge and codec hot
// paths, compared with the previous run's numbers, which it then replaces.
func goBench(ctx context.Context, e *runEnv) error {
	// Several passes over every benchmark, each best taken: a burst of
	// other work on the machine then spoils one pass of a benchmark, not
	// all of its samples.
	passes := e.pick(goCount, 2*goCount)
	args := append([]string{"test", "-run", "^$", "-bench", ".", "-benchmem", "-count", "1",
		"-benchtime", e.pickDur(300*time.Millisecond, 500*time.Millisecond).String()}, goPkgs...)
	cal := math.Inf(1)
	var all []byte
	for range passes {
		cal = min(cal, calibrate())
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = e.cfg.Root
		var out, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("go %s: %v: %s", strings.Join(args, " "), err, oneLine(stderr.String()+out.String()))
		}
		all = append(all, out.Bytes()...)
	}
	results, err := parseGoBench(all)
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
	// Times are compared relative to the calibration of their run.
	speed := 1.0
	if prev.Calibration > 0 {
		speed = cal / prev.Calibration
	}
	var suspects []*GoBench
	for i := range results {
		g := &results[i]
		g.verdict = Info
		g.speed = speed
		for j := range prev.Results {
			if prev.Results[j].Name != g.Name {
				continue
			}
			g.prev = &prev.Results[j]
			g.verdict = Pass
			// A slowdown is suspected when it shows both in time and
			// relative to the calibration; more allocations, see moreAllocs.
			slower := g.NsOp > g.prev.NsOp*regression && g.NsOp/speed > g.prev.NsOp*regression
			if slower || moreAllocs(g.AllocsOp, g.prev.AllocsOp) {
				suspects = append(suspects, g)
			}
		}
	}
	// Numbers from another hour of a shared machine moved by ±15 % and
	// more for the same code; a suspected slowdown is confirmed (or not)
	// by running the previous run's code and this one in turns, now.
	if len(suspects) > 0 {
		if err := e.confirm(ctx, suspects, prev.Commit); err != nil {
			e.log.Warn("could not compare with the previous run's code; keeping the suspected slowdowns", "err", err)
			for _, g := range suspects {
				g.verdict = Fail
			}
		}
	}
	regressed := 0
	for i := range results {
		if results[i].verdict == Fail {
			regressed++
		}
	}
	e.res.GoSpeed = fmt.Sprintf("calibration workload %s now, %s in the previous run", fmtNs(cal), fmtNs(prev.Calibration))
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
	data, err := json.MarshalIndent(goBenchFile{Taken: time.Now().UTC(), Commit: strings.TrimSpace(string(commit)),
		Calibration: cal, Results: results}, "", "  ")
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

// confirm runs each suspected benchmark of the previous run's commit and
// of this tree in turns and keeps as a regression only a slowdown that
// shows there too.
func (e *runEnv) confirm(ctx context.Context, suspects []*GoBench, prevCommit string) error {
	commit := strings.TrimSuffix(prevCommit, "-dirty")
	root := e.cfg.Root
	if err := exec.CommandContext(ctx, "git", "-C", root, "cat-file", "-e", commit+"^{commit}").Run(); err != nil {
		return fmt.Errorf("previous commit %q: %w", commit, err)
	}
	old := e.dir("gobench-previous")
	archive := exec.CommandContext(ctx, "sh", "-c", fmt.Sprintf("git -C %q archive %s | tar -x -C %q", root, commit, old))
	if out, err := archive.CombinedOutput(); err != nil {
		return fmt.Errorf("git archive %s: %v: %s", commit, err, oneLine(string(out)))
	}
	bins := map[string][2]string{} // package → old, new test binary
	for _, g := range suspects {
		pkg, _, _ := strings.Cut(g.Name, ".")
		if _, ok := bins[pkg]; ok {
			continue
		}
		name := strings.ReplaceAll(pkg, "/", "-")
		pair := [2]string{filepath.Join(old, name+".old.test"), filepath.Join(old, name+".new.test")}
		for i, dir := range []string{old, root} {
			cmd := exec.CommandContext(ctx, "go", "test", "-c", "-o", pair[i], "./"+pkg)
			cmd.Dir = dir
			if out, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("build %s test binary in %s: %v: %s", pkg, dir, err, oneLine(string(out)))
			}
		}
		bins[pkg] = pair
	}
	for _, g := range suspects {
		pkg, bench, _ := strings.Cut(g.Name, ".")
		pair := bins[pkg]
		best := [2]float64{math.Inf(1), math.Inf(1)}
		allocs := [2]float64{math.Inf(1), math.Inf(1)}
		for range 5 {
			for i, bin := range pair {
				out, err := exec.CommandContext(ctx, bin, "-test.run", "^$", "-test.bench", "^Benchmark"+regexp.QuoteMeta(bench)+"$",
					"-test.benchtime", "300ms", "-test.benchmem").Output()
				if err != nil {
					return fmt.Errorf("%s: %w", bin, err)
				}
				rs, err := parseGoBench(out)
				if err != nil {
					return fmt.Errorf("%s: %w", bin, err)
				}
				best[i] = min(best[i], rs[0].NsOp)
				allocs[i] = min(allocs[i], rs[0].AllocsOp)
			}
		}
		ratio := best[1] / best[0]
		g.ab = fmt.Sprintf("in turns with %s: %+.1f %%, allocs %g → %g", commit, (ratio-1)*100, allocs[0], allocs[1])
		if ratio > regression || moreAllocs(allocs[1], allocs[0]) {
			g.verdict = Fail
		}
	}
	return nil
}

// moreAllocs reports an increase in allocations per op beyond 10 % and
// beyond one: the counts are means truncated to integers, and for
// benchmarks that cycle over several inputs they move by one or two
// between runs of the same code.
func moreAllocs(now, before float64) bool { return now > max(before*regression, before+1) }
