package state

import (
	"bytes"
	"strings"
)

// KeyPrefixes lists the keys and key prefixes the merged state writes in
// the hub's store: facts, the hub's event counter, erasures, and its
// snapshot in the store's area for derived data (store.PrefixCache, which
// the store itself writes nothing under): every other package's keys
// there must start with none of them, nor be a prefix of one (a test
// checks).
func KeyPrefixes() []string {
	return []string{prefixFact, keyHubSeq, prefixErased, keySnapHead, prefixSnapData}
}

// SiteOfKey is the site a key of the merged state belongs to: a fact's
// or an erasure's; "" for the hub-wide keys (the hub's event counter, the
// snapshot) and for keys that are not the merged state's.
func SiteOfKey(key []byte) string {
	switch {
	case bytes.HasPrefix(key, []byte(prefixFact)):
		if site, _, _, ok := parseFactKey(key); ok {
			return site
		}
	case bytes.HasPrefix(key, []byte(prefixErased)):
		site, _, _ := strings.Cut(string(key[len(prefixErased):]), "/")
		return site
	}
	return ""
}
