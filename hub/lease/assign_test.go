package lease_test

import (
	"fmt"
	"math"
	"testing"

	"linli/hub/lease"
)

func counts(a map[string]string) map[string]int {
	c := map[string]int{}
	for _, w := range a {
		c[w]++
	}
	return c
}

// Sites spread evenly over 1 to 5 workers, and a worker joining or
// leaving moves about its share of them, not more.
func TestAssignBalancesAndMovesFew(t *testing.T) {
	const n = 500
	sites := make([]string, n)
	for i := range sites {
		sites[i] = fmt.Sprintf("site-%03d", i)
	}
	for w := 1; w <= 5; w++ {
		t.Run(fmt.Sprintf("%d workers", w), func(t *testing.T) {
			workers := make([]string, w)
			for i := range workers {
				workers[i] = fmt.Sprintf("hub-%c", 'a'+i)
			}
			a := lease.Assign(sites, workers)
			if len(a) != n {
				t.Fatalf("%d sites assigned, want %d", len(a), n)
			}
			c := counts(a)
			lo, hi := math.MaxInt, 0
			for _, wk := range workers {
				lo, hi = min(lo, c[wk]), max(hi, c[wk])
			}
			if hi-lo > 1 {
				t.Errorf("owned per worker %v: max-min %d, want ≤ 1", c, hi-lo)
			}
			// Same lists in another order: the same answer.
			rev := make([]string, w)
			for i := range workers {
				rev[i] = workers[w-1-i]
			}
			for s, o := range lease.Assign(sites, rev) {
				if a[s] != o {
					t.Fatalf("site %s: %s, and %s with the workers in another order", s, a[s], o)
				}
			}

			// One more worker joins: it should take about 1/(w+1).
			joined := lease.Assign(sites, append(workers[:w:w], "hub-new"))
			moved, toNew := 0, 0
			for s := range a {
				if joined[s] != a[s] {
					moved++
					if joined[s] == "hub-new" {
						toNew++
					}
				}
			}
			share := float64(n) / float64(w+1)
			t.Logf("%d workers: owned %v; a join moves %d sites (%d to the new worker, its fair share %.0f)", w, c, moved, toNew, share)
			if float64(moved) > 1.5*share || float64(toNew) < share-1 {
				t.Errorf("join: %d sites moved (%d to the new worker), want about %.0f", moved, toNew, share)
			}

			// The first worker leaves: only its sites should move, give or
			// take the bound's reshuffle.
			if w == 1 {
				return
			}
			left := lease.Assign(sites, workers[1:])
			moved = 0
			for s := range a {
				if left[s] != a[s] {
					moved++
				}
			}
			t.Logf("a leave moves %d sites (the leaver held %d)", moved, c[workers[0]])
			if share := float64(n) / float64(w); float64(moved) > 1.5*share {
				t.Errorf("leave: %d sites moved, want about %.0f", moved, share)
			}
		})
	}
}

func TestAssignNoWorkers(t *testing.T) {
	if a := lease.Assign([]string{"s"}, nil); len(a) != 0 {
		t.Fatalf("no workers: %v, want nothing assigned", a)
	}
}
