package lease

import (
	"hash/fnv"
	"slices"
)

// Assign gives each site one of workers: every worker computes the same
// answer from the same lists, so no worker has to ask another.
//
// It is rendezvous hashing with bounded loads. Each site ranks the
// workers by a hash of (site, worker); sites, taken in the order of their
// own hash, go to their highest-ranked worker that holds fewer than
// ceil(sites/workers). The bound keeps the counts within one of each
// other (plain rendezvous hashing is off by about the square root of a
// worker's share); the ranking keeps moves few: a joining worker takes
// about 1/n of the sites, mostly those that rank it first, and a leaving
// worker's sites go to their next choice. An empty workers list assigns
// nothing.
func Assign(sites, workers []string) map[string]string {
	out := make(map[string]string, len(sites))
	if len(workers) == 0 {
		return out
	}
	workers = slices.Clone(workers)
	slices.Sort(workers)
	workers = slices.Compact(workers)
	order := slices.Clone(sites)
	slices.Sort(order)
	order = slices.Compact(order)
	siteHash := make(map[string]uint64, len(order))
	for _, s := range order {
		siteHash[s] = mix(hashString(s))
	}
	slices.SortFunc(order, func(a, b string) int {
		if ha, hb := siteHash[a], siteHash[b]; ha != hb {
			if ha < hb {
				return -1
			}
			return 1
		}
		if a < b {
			return -1
		}
		return 1
	})
	limit := (len(order) + len(workers) - 1) / len(workers)
	load := make(map[string]int, len(workers))
	wh := make([]uint64, len(workers))
	for i, w := range workers {
		wh[i] = hashString(w)
	}
	for _, s := range order {
		best, bestScore := "", uint64(0)
		for i, w := range workers {
			if load[w] >= limit {
				continue
			}
			if score := mix(siteHash[s] ^ wh[i]); best == "" || score > bestScore {
				best, bestScore = w, score
			}
		}
		out[s] = best
		load[best]++
	}
	return out
}

func hashString(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

// mix is splitmix64's finaliser: FNV's low bits are poor, and a score
// must depend on every bit of both hashes.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
