package bench

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"
)

var header = []string{"scenario", "figure", "value", "baseline (same run)", "ratio", "target", "verdict"}

func (r Row) cells() []string {
	v := r.Verdict.String()
	switch {
	case r.Verdict == Unstable && r.Flag != "":
		v = r.Flag
	case r.Flag != "":
		v += "; " + r.Flag
	}
	return []string{r.Scenario, r.Figure, r.Value, r.Baseline, r.Ratio, r.Target, v}
}

// Text renders the table for a terminal.
func (r *Results) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n\n", r.machine())
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, row := range r.Rows {
		fmt.Fprintln(tw, strings.Join(row.cells(), "\t"))
	}
	if err := tw.Flush(); err != nil {
		fmt.Fprintf(&b, "render: %v\n", err)
	}
	if len(r.GoRows) > 0 {
		b.WriteString("\nGo benchmarks (best of " + fmt.Sprint(r.goCount) + " runs; previous: " + r.GoPrev + "; " + r.GoSpeed + ")\n")
		tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, strings.Join(goHeader, "\t"))
		for _, g := range r.GoRows {
			fmt.Fprintln(tw, strings.Join(g.cells(), "\t"))
		}
		if err := tw.Flush(); err != nil {
			fmt.Fprintf(&b, "render: %v\n", err)
		}
	}
	return b.String()
}

// Markdown renders the table and the notes for results.md.
func (r *Results) Markdown() string {
	var b strings.Builder
	b.WriteString("# `make bench` results\n\n")
	b.WriteString("Written by `linli-bench` (shared/bench); do not edit by hand.\n\n")
	fmt.Fprintf(&b, "%s\n\n", r.machine())
	r.markdownTable(&b)
	if len(r.GoRows) > 0 {
		b.WriteString("\n## Go benchmarks\n\n")
		b.WriteString("`go test -run '^$' -bench . -benchmem` on the merge and codec hot paths, best of " +
			fmt.Sprint(r.goCount) + " runs; compared with the previous run (" + r.GoPrev + "); a slowdown or more allocations beyond 10 % is flagged. " +
			"Times are compared after dividing each by a fixed standard-library workload (JSON, SHA-256, sorting) timed in the same run (" + r.GoSpeed + "), " +
			"so that a machine busier than last time does not pass for a regression; a slowdown is flagged when it shows both raw and calibrated.\n\n")
		b.WriteString("| " + strings.Join(goHeader, " | ") + " |\n")
		b.WriteString("|" + strings.Repeat(" --- |", len(goHeader)) + "\n")
		for _, g := range r.GoRows {
			b.WriteString("| " + strings.Join(escapeCells(g.cells()), " | ") + " |\n")
		}
	}
	if len(r.Notes) > 0 {
		b.WriteString("\n## How each figure is measured\n\n")
		for _, n := range r.Notes {
			b.WriteString("- " + n + "\n")
		}
	}
	return b.String()
}

func (r *Results) markdownTable(b *strings.Builder) {
	b.WriteString("| " + strings.Join(header, " | ") + " |\n")
	b.WriteString("|" + strings.Repeat(" --- |", len(header)) + "\n")
	for _, row := range r.Rows {
		cells := row.cells()
		if row.Verdict == Fail {
			cells[6] = "**FAIL**"
		}
		b.WriteString("| " + strings.Join(escapeCells(cells), " | ") + " |\n")
	}
}

// Summary is the performance doc's part of a run: the machine and the
// table, with a pointer to the full results (Go benchmarks, how each
// figure is measured). The pointer names resultsFile and links to link,
// the same file as seen from the doc's directory, so that it resolves
// wherever the doc lives.
func (r *Results) Summary(resultsFile, link string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n\n", r.machine())
	r.markdownTable(&b)
	if resultsFile != "" {
		fmt.Fprintf(&b, "\nThe Go benchmarks and how each figure and baseline is measured: [`%s`](%s).\n", resultsFile, link)
	}
	return b.String()
}

func escapeCells(cells []string) []string {
	out := make([]string, len(cells))
	for i, c := range cells {
		out[i] = strings.ReplaceAll(c, "|", "\\|")
	}
	return out
}

func (r *Results) machine() string {
	variant := "short run (`make bench`)"
	if r.Long {
		variant = "long run (`make bench-long`)"
	}
	host, _ := os.Hostname()
	m := r.Machine
	return fmt.Sprintf("%s, %s; machine: %d CPUs (nproc), %s, Linux %s, host %s; GOMAXPROCS %d, %s %s/%s; took %s; "+
		"load average (1, 5, 15 min) %s at the start, %s at the end; %s over the run; every ratio is the median of %d alternated "+
		"baseline/scenario pairs with their spread (min–max), and a ratio whose baseline moved more than %.0f %% from the first pair to "+
		"the last is flagged unstable and not judged (the machine is shared: absolute figures move with it, same-pair ratios much less).",
		r.Start.Format("2006-01-02 15:04 MST"), variant, m.CPUs, m.Model, m.Kernel, host, runtime.GOMAXPROCS(0),
		runtime.Version(), runtime.GOOS, runtime.GOARCH, r.End.Sub(r.Start).Round(time.Second), r.LoadStart, r.LoadEnd,
		tickDelta(r.StatStart, r.StatEnd), r.Pairs, 100*unstableMove)
}

// Number formatting for the table.

func fmtRate(v float64) string { return groupThousands(int64(v+0.5)) + " ev/s" }

func fmtMs(d time.Duration) string {
	ms := float64(d) / float64(time.Millisecond)
	switch {
	case ms < 10:
		return fmt.Sprintf("%.2f ms", ms)
	case ms < 100:
		return fmt.Sprintf("%.1f ms", ms)
	}
	return fmt.Sprintf("%.0f ms", ms)
}

func fmtMiB(bytes uint64) string { return fmt.Sprintf("%.1f MiB", float64(bytes)/(1<<20)) }

func fmtRatio(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f×", v)
	case v >= 10:
		return fmt.Sprintf("%.1f×", v)
	}
	return fmt.Sprintf("%.2f×", v)
}

func fmtPct(v float64) string { return fmt.Sprintf("%.1f %%", v*100) }

func groupThousands(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func verdict(ok bool) Verdict {
	if ok {
		return Pass
	}
	return Fail
}
