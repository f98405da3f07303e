package kiosk

// KeyPrefixes lists the keys and key prefixes the kiosk (its resident
// index and report numbers) writes in the edge's store: every other
// package's keys there must start with none of them, nor be a prefix of
// one (a test checks).
func KeyPrefixes() []string {
	return []string{keyIndexCursor, prefixReports, prefixCheckins, prefixRatings, prefixSeen, keyNumber}
}
