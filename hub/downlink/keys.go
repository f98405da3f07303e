package downlink

import "bytes"

// KeyPrefixes lists the key prefix the change log takes in the hub's
// store: every other package's keys there must start with none of them,
// nor be a prefix of one (a test checks).
func KeyPrefixes() []string { return []string{prefix} }

// SiteOfKey is the site of a change log key, "" for a key that is not
// the log's.
func SiteOfKey(key []byte) string {
	if !bytes.HasPrefix(key, []byte(prefix)) || len(key) < len(prefix)+9 {
		return ""
	}
	return siteOf(key)
}
