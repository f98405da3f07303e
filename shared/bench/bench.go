// Package bench is Linli's benchmark harness (`make bench`): it runs the
// real binaries on loopback, measures each scenario of docs/performance.md against a
// baseline measured in the same run, and renders one table of figures,
// ratios, targets and verdicts as text and Markdown.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"linli/shared/config"
)

// Config is every setting of a harness run.
type Config struct {
	Bin       string   // directory holding linli-hub and linli-edge
	Work      string   // scratch directory (data dirs, logs); default a temp dir
	Out       string   // Markdown results file
	GoBench   string   // previous Go benchmark numbers (JSON), read and rewritten
	Mosquitto string   // path of the Mosquitto binary; "" skips the Mosquitto runs
	MosqConf  string   // configs/mosquitto.conf
	Long      bool     // the long variants
	Only      []string // scenario names to run (default all)
	Keep      bool     // keep the work directory
	Root      string   // module root, for `go test -bench`
	EdgeArgs  []string // extra linli-edge flags for every edge (experiments)
	HubArgs   []string // extra linli-hub flags for every hub (experiments)
	Pairs     int      // alternated baseline/scenario pairs behind every ratio
	Readme    string   // Markdown doc whose generated table to rewrite; "" for none
	// StartupSizes are the history sizes the start-up scenario compares,
	// smallest first: the first is the baseline, the last is judged.
	StartupSizes []int
	// FleetHubs is how many hubs the fleet scenario starts on its broker,
	// and FleetStore their store: "" one hub on its own Badger,
	// FleetStorePG a PostgreSQL server of the harness's, or a URL.
	FleetHubs  int
	FleetStore string
}

// FleetStorePG as --fleet-store has the harness start a PostgreSQL server
// for the fleet's workers.
const FleetStorePG = "pg"

// Scenario names, for --only.
const (
	ScIngest  = "ingest"
	ScCatchup = "catchup"
	ScOnline  = "online"
	ScFanin   = "fanin"
	ScFleet   = "fleet"
	ScAlarm   = "alarm"
	ScGo      = "go"
	ScSlow    = "slowdisk"
	ScSignups = "signups"
	ScStartup = "startup"
	ScPG      = "postgres"
)

var allScenarios = []string{ScIngest, ScSlow, ScCatchup, ScOnline, ScFanin, ScFleet, ScAlarm, ScSignups, ScStartup, ScPG, ScGo}

// Main runs the harness with args and returns the exit code: 0 when every
// target passes, 1 when one misses or a scenario fails, 2 for bad settings.
func Main(ctx context.Context, args, env []string, stdout, stderr io.Writer) int {
	if addr := bareAddr(env); addr != "" {
		if err := serveBare(ctx, addr, stdout); err != nil {
			fmt.Fprintf(stderr, "linli-bench: %v\n", err)
			return 1
		}
		return 0
	}
	if dir, dur := perEventArgs(env); dir != "" {
		if err := servePerEvent(ctx, dir, dur, stdout); err != nil {
			fmt.Fprintf(stderr, "linli-bench: %v\n", err)
			return 1
		}
		return 0
	}
	var c Config
	set := config.New("linli-bench", stdout)
	set.String(&c.Bin, "bin", "bin", "directory with the linli-hub and linli-edge binaries")
	set.String(&c.Work, "work", "", "scratch directory (default: a new temp dir, removed afterwards)")
	set.String(&c.Out, "out", "shared/bench/results.md", "Markdown results file to write (\"\" for none)")
	set.String(&c.GoBench, "gobench", "shared/bench/gobench.json", "Go benchmark numbers of the previous run, compared and then replaced")
	set.String(&c.Mosquitto, "mosquitto", "/usr/sbin/mosquitto", "Mosquitto binary (\"\" skips the Mosquitto runs)")
	set.String(&c.MosqConf, "mosquitto-conf", "configs/mosquitto.conf", "Mosquitto config whose listener is moved to a free port")
	set.Bool(&c.Long, "long", false, "run the long variants (1,000,000-event backlog, longer steady loads)")
	set.List(&c.Only, "only", nil, "scenarios to run: "+strings.Join(allScenarios, ", ")+" (default all)")
	set.Bool(&c.Keep, "keep", false, "keep the scratch directory (logs, data dirs)")
	set.String(&c.Root, "root", ".", "module root (for go test -bench)")
	set.List(&c.EdgeArgs, "edge-args", nil, "extra linli-edge flags, comma-separated (experiments; the table is then not the product's)")
	set.List(&c.HubArgs, "hub-args", nil, "extra linli-hub flags, comma-separated (experiments)")
	set.Int(&c.Pairs, "pairs", 5, "alternated baseline/scenario pairs behind every ratio (median and spread are reported)")
	var sizes []string
	set.List(&sizes, "startup-sizes", nil, "stored events of the start-up scenario's hubs, smallest first: the first is the baseline, the last is judged (default 1000000,5000000; with --long 1000000,10000000)")
	set.Int(&c.FleetHubs, "fleet-hubs", 1, "hubs the fleet scenario starts behind its Mosquitto: more than one are a district's workers, each with its own --id, and need --fleet-store")
	set.String(&c.FleetStore, "fleet-store", "", "the fleet's hubs' store: \"\" one hub on its own Badger; \""+FleetStorePG+"\" a PostgreSQL server the harness starts; or a postgres:// URL (an empty database)")
	set.String(&c.Readme, "readme", "", "Markdown file whose table between the bench markers is rewritten with this run's (\"\" for none)")
	if err := set.Load(args, env); err != nil {
		if errors.Is(err, config.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "linli-bench: %v\n", err)
		return 2
	}
	if len(sizes) == 0 {
		// Writing 10,000,000 events takes this 2-core machine 2-6 minutes
		// as its load varies: the short run stops at 5,000,000.
		sizes = []string{"1000000", "5000000"}
		if c.Long {
			sizes = []string{"1000000", "10000000"}
		}
	}
	for _, v := range sizes {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1000 {
			fmt.Fprintf(stderr, "linli-bench: startup-sizes: %q is not a count of at least 1000 events\n", v)
			return 2
		}
		c.StartupSizes = append(c.StartupSizes, n)
	}
	if err := c.Validate(); err != nil {
		fmt.Fprintf(stderr, "linli-bench: %v\n", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	res, err := Run(ctx, c, log)
	if res != nil {
		fmt.Fprintln(stdout)
		fmt.Fprint(stdout, res.Text())
		if c.Out != "" {
			if werr := os.WriteFile(c.Out, []byte(res.Markdown()), 0o644); werr != nil {
				fmt.Fprintf(stderr, "linli-bench: write %s: %v\n", c.Out, werr)
				return 1
			}
			fmt.Fprintf(stdout, "\nwritten to %s\n", c.Out)
		}
		if c.Readme != "" {
			if werr := rewriteReadme(c.Readme, res, c.Out); werr != nil {
				fmt.Fprintf(stderr, "linli-bench: %v\n", werr)
				return 1
			}
			fmt.Fprintf(stdout, "table in %s rewritten\n", c.Readme)
		}
		fmt.Fprintf(stdout, "total time: %s\n", res.End.Sub(res.Start).Round(time.Second))
		if n := res.Unstable(); n > 0 {
			fmt.Fprintf(stdout, "%d figure(s) unstable (their baseline moved more than %.0f%% during the run): not judged\n", n, 100*unstableMove)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "linli-bench: %v\n", err)
		return 1
	}
	if res.Failed() > 0 {
		fmt.Fprintf(stdout, "%d figure(s) miss their target\n", res.Failed())
		return 1
	}
	return 0
}

// Validate checks the settings, naming the first bad one.
func (c *Config) Validate() error {
	for _, b := range []string{"linli-hub", "linli-edge"} {
		if _, err := os.Stat(filepath.Join(c.Bin, b)); err != nil {
			return config.Errorf("bin", "%s has no %s (run make build): %v", c.Bin, b, err)
		}
	}
	if len(c.StartupSizes) < 2 || !slices.IsSorted(c.StartupSizes) || c.StartupSizes[0] == c.StartupSizes[len(c.StartupSizes)-1] {
		return config.Errorf("startup-sizes", "%v: at least two sizes, smallest first", c.StartupSizes)
	}
	if c.FleetHubs < 1 {
		return config.Errorf("fleet-hubs", "%d: at least one hub is needed", c.FleetHubs)
	}
	if c.FleetStore != "" && c.FleetStore != FleetStorePG && !strings.HasPrefix(c.FleetStore, "postgres://") && !strings.HasPrefix(c.FleetStore, "postgresql://") {
		return config.Errorf("fleet-store", "%q: %q or a postgres:// URL", redactURL(c.FleetStore), FleetStorePG)
	}
	if c.FleetHubs > 1 && c.FleetStore == "" {
		// Hubs on Badger of their own share no sites: each would take
		// every message, and only the one enrolling knows the fleet.
		return config.Errorf("fleet-hubs", "%d hubs need --fleet-store (%q or a postgres:// URL): workers share one PostgreSQL", c.FleetHubs, FleetStorePG)
	}
	if c.Pairs < 1 {
		return config.Errorf("pairs", "%d: at least one pair is needed", c.Pairs)
	}
	for _, s := range c.Only {
		if !slices.Contains(allScenarios, s) {
			return config.Errorf("only", "%q is not one of %s", s, strings.Join(allScenarios, ", "))
		}
	}
	if c.Mosquitto != "" {
		if _, err := os.Stat(c.Mosquitto); err != nil {
			return config.Errorf("mosquitto", "%v (make deps installs it; --mosquitto '' skips it)", err)
		}
		if _, err := os.Stat(c.MosqConf); err != nil {
			return config.Errorf("mosquitto-conf", "%v", err)
		}
	}
	return nil
}

func (c *Config) runs(s string) bool { return len(c.Only) == 0 || slices.Contains(c.Only, s) }

// Verdict is whether a figure meets its target.
type Verdict int

// Verdicts.
const (
	Info Verdict = iota // reported, no target
	Pass
	Fail
	Unstable // the baseline moved too much during the run to judge
)

func (v Verdict) String() string {
	switch v {
	case Pass:
		return "pass"
	case Fail:
		return "FAIL"
	case Unstable:
		return "unstable"
	}
	return "info"
}

// Row is one figure of the table.
type Row struct {
	Scenario string
	Figure   string
	Value    string
	Baseline string // the baseline figure, "" when none
	Ratio    string // value against the baseline, "" when none
	Target   string
	Verdict  Verdict
	Flag     string // why a figure is not judged ("unstable: baseline moved 31%")
}

// Results is a run's table and notes.
type Results struct {
	Start, End time.Time
	Long       bool
	Rows       []Row
	Notes      []string // how each baseline was run, caveats
	GoRows     []GoBench
	GoPrev     string // when the previous Go numbers were taken
	GoSpeed    string // the calibration of both runs
	goCount    int
	LoadStart  string // load averages (1, 5, 15 min) when the run started
	LoadEnd    string
	StatStart  cpuTicks // machine CPU ticks at the start and the end
	StatEnd    cpuTicks
	Machine    machineInfo
	Pairs      int
}

func (r *Results) add(row Row) { r.Rows = append(r.Rows, row) }

func (r *Results) note(format string, a ...any) { r.Notes = append(r.Notes, fmt.Sprintf(format, a...)) }

// Unstable counts figures not judged because their baseline moved.
func (r *Results) Unstable() int {
	n := 0
	for _, row := range r.Rows {
		if row.Verdict == Unstable {
			n++
		}
	}
	return n
}

// Failed counts figures that miss their target.
func (r *Results) Failed() int {
	n := 0
	for _, row := range r.Rows {
		if row.Verdict == Fail {
			n++
		}
	}
	return n
}

// Run runs the selected scenarios in turn. A scenario that fails to run is
// reported as a failed row; the others still run.
func Run(ctx context.Context, c Config, log *slog.Logger) (*Results, error) {
	work := c.Work
	if work == "" {
		d, err := os.MkdirTemp("", "linli-bench-")
		if err != nil {
			return nil, err
		}
		work = d
		if !c.Keep {
			defer os.RemoveAll(d)
		}
	} else if err := os.MkdirAll(work, 0o700); err != nil {
		return nil, err
	}
	log.Info("benchmark run", "work", work, "long", c.Long, "cores", runtime.NumCPU())
	res := &Results{Start: time.Now(), Long: c.Long, LoadStart: loadAvg(), StatStart: readTicks(), Machine: readMachine(), Pairs: c.Pairs}
	env := &runEnv{cfg: c, work: work, log: log, res: res}
	steps := []struct {
		name string
		f    func(context.Context, *runEnv) error
	}{
		{ScIngest, edgeIngest},
		{ScSlow, slowDisk},
		{ScCatchup, catchUp},
		{ScOnline, online},
		{ScFanin, fanIn},
		{ScFleet, fleetScale},
		{ScAlarm, alarmLatency},
		{ScSignups, signups},
		{ScStartup, startup},
		{ScPG, postgresScenario},
		{ScGo, goBench},
	}
	for _, s := range steps {
		if !c.runs(s.name) || ctx.Err() != nil {
			continue
		}
		log.Info("scenario", "name", s.name)
		start := time.Now()
		if err := s.f(ctx, env); err != nil {
			log.Error("scenario failed", "name", s.name, "err", err)
			res.add(Row{Scenario: s.name, Figure: "scenario ran", Value: "error: " + oneLine(err.Error()), Verdict: Fail})
		}
		log.Info("scenario done", "name", s.name, "took", time.Since(start).Round(time.Millisecond))
	}
	res.End, res.LoadEnd, res.StatEnd = time.Now(), loadAvg(), readTicks()
	return res, ctx.Err()
}

// runEnv is what scenarios share.
type runEnv struct {
	cfg  Config
	work string
	log  *slog.Logger
	res  *Results
	seq  int
}

// dir makes a fresh directory under the work dir.
func (e *runEnv) dir(name string) string {
	e.seq++
	d := filepath.Join(e.work, fmt.Sprintf("%02d-%s", e.seq, name))
	if err := os.MkdirAll(d, 0o700); err != nil {
		panic(err) // the work dir was just created by us
	}
	return d
}

func (e *runEnv) hubBin() string  { return filepath.Join(e.cfg.Bin, "linli-hub") }
func (e *runEnv) edgeBin() string { return filepath.Join(e.cfg.Bin, "linli-edge") }

// pick is the short or the long variant of a number.
func (e *runEnv) pick(short, long int) int {
	if e.cfg.Long {
		return long
	}
	return short
}

func (e *runEnv) pickDur(short, long time.Duration) time.Duration {
	if e.cfg.Long {
		return long
	}
	return short
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
