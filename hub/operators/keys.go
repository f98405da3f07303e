package operators

// KeyPrefixes lists the key prefixes operator accounts, sessions, tokens
// and the audit log take in the hub's store: every other package's keys
// there must start with none of them, nor be a prefix of one (a test
// checks).
func KeyPrefixes() []string {
	return []string{prefixAccount, prefixSession, prefixToken, prefixAudit}
}
