package bench

import (
	"fmt"
	"math"
	"slices"
)

// unstableMove is how far a baseline may move between the first and the
// last pair of a run before its ratio is not judged: past it, the machine
// changed under the run and the ratio says more about the machine.
const unstableMove = 0.25

// pairs are the figures of alternated runs of a baseline and a scenario
// (baseline, scenario, baseline, scenario, …), one pair per turn: each
// ratio is taken within its pair, so both sides saw the same machine.
type pairs struct {
	base, scen []float64
}

func (p *pairs) add(base, scen float64) {
	p.base = append(p.base, base)
	p.scen = append(p.scen, scen)
}

func (p *pairs) n() int { return len(p.base) }

// ratios is each pair's scenario over its baseline.
func (p *pairs) ratios() []float64 {
	r := make([]float64, len(p.base))
	for i := range p.base {
		r[i] = p.scen[i] / p.base[i]
	}
	return r
}

// median of xs; of an even count the lower middle, never the flattering
// one.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[(len(s)-1)/2]
}

// medianPair is the index of the pair whose ratio is the median.
func (p *pairs) medianPair() int {
	r := p.ratios()
	m := median(r)
	return slices.Index(r, m)
}

// moved is how far the baseline moved from the first pair to the last, as
// a share of the first.
func (p *pairs) moved() float64 {
	if len(p.base) < 2 || p.base[0] == 0 {
		return 0
	}
	return math.Abs(p.base[len(p.base)-1]-p.base[0]) / p.base[0]
}

// unstable says whether the baseline moved too much for the ratio to be
// judged.
func (p *pairs) unstable() bool { return p.moved() > unstableMove }

// ratioCell renders the median ratio and the spread of all pairs.
func (p *pairs) ratioCell(format func(float64) string) string {
	r := p.ratios()
	if len(r) == 0 {
		return ""
	}
	return fmt.Sprintf("%s (median of %d pairs; %s–%s)", format(median(r)), len(r), format(slices.Min(r)), format(slices.Max(r)))
}

// judge is the verdict on a target: unstable runs get none.
func (p *pairs) judge(ok bool) (Verdict, string) {
	if p.unstable() {
		return Unstable, fmt.Sprintf("unstable: baseline moved %.0f%%", 100*p.moved())
	}
	return verdict(ok), ""
}

// judged sets row's ratio, verdict and flag from p: the median ratio must
// meet ok.
func (p *pairs) judged(row Row, format func(float64) string, ok func(float64) bool) Row {
	row.Ratio = p.ratioCell(format)
	if ok == nil {
		row.Verdict = Info
		if p.unstable() {
			_, row.Flag = p.judge(true)
		}
		return row
	}
	row.Verdict, row.Flag = p.judge(ok(median(p.ratios())))
	return row
}
