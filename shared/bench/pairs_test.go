package bench

import (
	"strings"
	"testing"
)

func TestPairsJudge(t *testing.T) {
	atLeast10 := func(r float64) bool { return r >= 10 }
	tests := []struct {
		name       string
		base, scen []float64
		verdict    Verdict
		ratio      string // the ratio cell
		flag       string // substring of the flag, "" for none
	}{
		{"steady, passes", []float64{100, 110, 90, 100, 105}, []float64{1200, 1100, 1000, 1500, 1050},
			Pass, "11.1× (median of 5 pairs; 10.0×–15.0×)", ""},
		{"steady, misses", []float64{100, 100, 100}, []float64{900, 1200, 800},
			Fail, "9.00× (median of 3 pairs; 8.00×–12.0×)", ""},
		{"baseline moved 30 %: not judged", []float64{100, 110, 120, 125, 130}, []float64{500, 550, 600, 625, 650},
			Unstable, "5.00× (median of 5 pairs; 5.00×–5.00×)", "unstable: baseline moved 30%"},
		{"baseline fell 40 %: not judged even though it passes", []float64{100, 80, 60}, []float64{2000, 1600, 1200},
			Unstable, "20.0× (median of 3 pairs; 20.0×–20.0×)", "unstable: baseline moved 40%"},
		{"moved within 25 %", []float64{100, 300, 124}, []float64{1000, 3000, 1240},
			Pass, "10.0× (median of 3 pairs; 10.0×–10.0×)", ""},
		{"even count: the lower middle", []float64{1, 1, 1, 1}, []float64{9, 12, 11, 10},
			Pass, "10.0× (median of 4 pairs; 9.00×–12.0×)", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var p pairs
			for i := range tc.base {
				p.add(tc.base[i], tc.scen[i])
			}
			row := p.judged(Row{Target: "≥ 10×"}, fmtRatio, atLeast10)
			if row.Verdict != tc.verdict || row.Ratio != tc.ratio {
				t.Errorf("verdict %v, ratio %q; want %v, %q", row.Verdict, row.Ratio, tc.verdict, tc.ratio)
			}
			if tc.flag == "" && row.Flag != "" || !strings.Contains(row.Flag, tc.flag) {
				t.Errorf("flag %q, want %q", row.Flag, tc.flag)
			}
			if tc.verdict == Unstable && row.cells()[6] != row.Flag {
				t.Errorf("verdict cell %q, want the flag", row.cells()[6])
			}
			if m := p.medianPair(); p.scen[m]/p.base[m] != median(p.ratios()) {
				t.Errorf("median pair %d is not the median ratio", m)
			}
		})
	}
}

func TestUnstableIsNotAFailure(t *testing.T) {
	r := &Results{Rows: []Row{{Verdict: Unstable}, {Verdict: Pass}, {Verdict: Fail}, {Verdict: Info, Flag: "unstable: baseline moved 40%"}}}
	if r.Failed() != 1 || r.Unstable() != 1 {
		t.Fatalf("failed %d, unstable %d; want 1, 1", r.Failed(), r.Unstable())
	}
}

func TestMachine(t *testing.T) {
	cpuinfo := "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R)  CPU @ 2.20GHz\n\nprocessor\t: 1\nmodel name\t: other\n"
	if got := cpuModel([]byte(cpuinfo)); got != "Intel(R) Xeon(R) CPU @ 2.20GHz" {
		t.Errorf("model %q", got)
	}
	a, err := parseTicks([]byte("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3\n"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := parseTicks([]byte("cpu  200 0 100 900 50 0 0 50 0 0\n"))
	if err != nil {
		t.Fatal(err)
	}
	// 300 ticks passed: 150 busy, 100 idle, 50 stolen.
	if got, want := tickDelta(a, b), "CPU steal 50 ticks (16.7 % of all CPU time; 0 at the start, 50 at the end), CPU busy 50 %"; got != want {
		t.Errorf("delta %q, want %q", got, want)
	}
	if _, err := parseTicks([]byte("intr 1 2 3")); err == nil {
		t.Error("a /proc/stat without its cpu line parsed")
	}
}

func TestSpliceMarkers(t *testing.T) {
	doc := "# R\n\nintro\n" + readmeBegin + "\nold table\n" + readmeEnd + "\nafter\n"
	out, err := spliceMarkers([]byte(doc), "new table\n")
	if err != nil {
		t.Fatal(err)
	}
	if want := "# R\n\nintro\n" + readmeBegin + "\nnew table\n" + readmeEnd + "\nafter\n"; string(out) != want {
		t.Errorf("got %q, want %q", out, want)
	}
	for _, bad := range []string{"no markers", readmeEnd + readmeBegin, readmeBegin + readmeEnd + readmeBegin + readmeEnd} {
		if _, err := spliceMarkers([]byte(bad), "x"); err == nil {
			t.Errorf("%q spliced", bad)
		}
	}
}
