package store

// prefixLegacyReports is the index of report events older hubs wrote;
// nothing reads it, but a store may still hold it.
const prefixLegacyReports = "x/report/"

// KeyPrefixes lists the keys and key prefixes the store writes (or, the
// legacy report index, may still hold): every other package's keys in
// the hub's store must start with none of them, nor be a prefix of one
// (a test checks). PrefixCache is not among them: it is the area other
// packages keep derived data in, each under a prefix of its own.
func KeyPrefixes() []string {
	return []string{prefixDevice, prefixEvent, prefixQuar, prefixResynced, keyBackups, prefixHorizon,
		keyVersion, keyRestore, prefixLegacyReports}
}
