package faults

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"linli/shared/test/testkit"
)

// newRand is a seeded source whose seed is logged, so a failing run can be
// replayed with LINLI_FAULTS_SEED.
func newRand(t *testing.T) *rand.Rand {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("LINLI_FAULTS_SEED"); s != "" {
		if _, err := fmt.Sscan(s, &seed); err != nil {
			t.Fatalf("LINLI_FAULTS_SEED: %v", err)
		}
	}
	t.Logf("seed %d (replay with LINLI_FAULTS_SEED=%d)", seed, seed)
	return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}

// between returns a random duration in [lo, hi).
func between(r *rand.Rand, lo, hi time.Duration) time.Duration {
	return lo + time.Duration(r.Int64N(int64(hi-lo)))
}

// embeddedHub starts a hub with its embedded broker on a fresh port.
func embeddedHub(t *testing.T, args ...string) *testkit.Hub {
	t.Helper()
	return testkit.StartHub(t, testkit.HubConfig{Data: filepath.Join(t.TempDir(), "hub"), MQTTAddr: testkit.StablePort(t), Args: args})
}

// hubStores runs a hub-side scenario once per store the hub can keep its
// state in: the Badger store in its data dir, and PostgreSQL (a database
// of its own, --store). Nothing may differ between them but speed.
func hubStores(t *testing.T, scenario func(t *testing.T, hubArgs []string)) {
	t.Run("badger", func(t *testing.T) {
		t.Parallel()
		scenario(t, nil)
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		// One hub alone on the database: with an external broker a hub on
		// PostgreSQL would otherwise be a district's worker, serving only
		// the sites it holds a lease for, and these edges are not enrolled.
		scenario(t, []string{"--store", testkit.StartPostgres(t), "--lease", "off"})
	})
}
