package e2e

import (
	"strings"
	"testing"

	"linli/edge/gateway"
	"linli/edge/kiosk"
	"linli/edge/outbox"
	"linli/edge/replica"
	"linli/edge/seats"
	"linli/hub/downlink"
	"linli/hub/operators"
	"linli/hub/registry"
	"linli/hub/state"
	"linli/hub/store"
	"linli/shared/ready"
)

// keyOwners are the packages that write keys into one Badger store, each
// with the keys and key prefixes it declares.
type keyOwners map[string][]string

// The edge's store and the hub's are each shared by several packages,
// which find their own keys by prefix: a prefix of one package that is a
// prefix of another's (or of one of its whole keys) would have one
// package read, count, rewrite or delete another's records. Each package
// declares what it writes (KeyPrefixes); no declaration may be a prefix
// of another package's in the same store.
func TestKeyPrefixesDoNotOverlap(t *testing.T) {
	t.Parallel()
	stores := map[string]keyOwners{
		"edge": {
			"edge/outbox":  outbox.KeyPrefixes(),
			"edge/replica": replica.KeyPrefixes(),
			"edge/seats":   seats.KeyPrefixes(),
			"edge/kiosk":   kiosk.KeyPrefixes(),
			"edge/gateway": gateway.KeyPrefixes(),
			"shared/ready": ready.KeyPrefixes(),
		},
		"hub": {
			"hub/store":     store.KeyPrefixes(),
			"hub/state":     state.KeyPrefixes(),
			"hub/operators": operators.KeyPrefixes(),
			"hub/registry":  registry.KeyPrefixes(),
			"hub/downlink":  downlink.KeyPrefixes(),
			"shared/ready":  ready.KeyPrefixes(),
		},
	}
	for name, owners := range stores {
		t.Run(name, func(t *testing.T) {
			for _, p := range overlaps(owners) {
				t.Error(p)
			}
		})
	}
}

// overlaps lists every pair of declarations of two different packages
// where one is a prefix of the other, and every empty declaration.
func overlaps(owners keyOwners) []string {
	var out []string
	for a, as := range owners {
		for _, p := range as {
			if p == "" {
				out = append(out, a+" declares an empty key prefix, which every key starts with")
			}
			for b, bs := range owners {
				if a >= b {
					continue // each pair once, and a package's own keys are its own affair
				}
				for _, q := range bs {
					if p != "" && q != "" && (strings.HasPrefix(p, q) || strings.HasPrefix(q, p)) {
						out = append(out, a+"'s "+p+" and "+b+"'s "+q+" overlap: one is a prefix of the other")
					}
				}
			}
		}
	}
	return out
}

// The check finds what it is for: an overlap across packages in either
// direction, an empty prefix, and not a package's own nested keys.
func TestKeyPrefixOverlapCheck(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		owners keyOwners
		want   int
	}{
		{"disjoint", keyOwners{"a": {"a/", "m/last"}, "b": {"b/", "m/acked"}}, 0},
		{"a whole key that starts another's keys", keyOwners{"a": {"m/last"}, "b": {"m/lastly/"}}, 1},
		{"prefix of another's prefix", keyOwners{"a": {"e/"}, "b": {"e/x/"}}, 1},
		{"other way round", keyOwners{"a": {"k/rep/x"}, "b": {"k/rep/"}}, 1},
		{"same prefix twice", keyOwners{"a": {"s/"}, "b": {"s/"}}, 1},
		{"nested within one package", keyOwners{"a": {"cache/state/", "cache/state/head"}, "b": {"f/"}}, 0},
		{"shares only a leading letter", keyOwners{"a": {"x/report/"}, "b": {"x/erased/"}}, 0},
		{"empty prefix", keyOwners{"a": {""}, "b": {"b/"}}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := overlaps(tt.owners); len(got) != tt.want {
				t.Errorf("%d overlaps %q, want %d", len(got), got, tt.want)
			}
		})
	}
}
