package state

// KeyPrefixes lists the keys and key prefixes the merged state writes in
// the hub's store: facts, the hub's event counter, erasures, and its
// snapshot in the store's area for derived data (store.PrefixCache, which
// the store itself writes nothing under): every other package's keys
// there must start with none of them, nor be a prefix of one (a test
// checks).
func KeyPrefixes() []string {
	return []string{prefixFact, keyHubSeq, prefixErased, keySnapHead, prefixSnapData}
}
