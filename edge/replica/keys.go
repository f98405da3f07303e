package replica

// KeyPrefixes lists the keys and key prefixes the replica writes in the
// edge's store: every other package's keys there must start with none of
// them, nor be a prefix of one (a test checks).
func KeyPrefixes() []string {
	return []string{keyCursor, prefixEntity, prefixPart}
}
