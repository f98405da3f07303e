package downlink

import "bytes"

// KeyPrefixes lists the key prefixes the change log takes in the hub's
// store (the log, its entity index, its heads, the index's mark): every
// other package's keys there must start with none of them, nor be a
// prefix of one (a test checks).
func KeyPrefixes() []string { return []string{prefix, prefixIndex, prefixHead, keyIndexed} }

// SiteOfKey is the site of a change log key (a change, an index entry, a
// head), "" for a key that is not the log's or is hub-wide.
func SiteOfKey(key []byte) string {
	switch {
	case bytes.HasPrefix(key, []byte(prefix)):
		if len(key) < len(prefix)+9 {
			return ""
		}
		return siteOf(key)
	case bytes.HasPrefix(key, []byte(prefixIndex)):
		site, _, ok := bytes.Cut(key[len(prefixIndex):], []byte("/"))
		if !ok {
			return ""
		}
		return string(site)
	case bytes.HasPrefix(key, []byte(prefixHead)):
		return string(key[len(prefixHead):])
	}
	return ""
}
