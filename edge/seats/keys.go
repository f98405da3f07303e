package seats

// KeyPrefixes lists the key prefixes the seat ledgers take in the edge's
// store: every other package's keys there must start with none of them,
// nor be a prefix of one (a test checks).
func KeyPrefixes() []string {
	return []string{prefixLedger, prefixMine, prefixCame, prefixRes}
}
