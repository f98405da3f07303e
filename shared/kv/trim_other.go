//go:build !linux

package kv

// TrimMapped needs Linux's /proc/self/maps and MADV_PAGEOUT.
func TrimMapped(dir string) (int64, error) { return 0, ErrTrimUnsupported }

// ResidentFile needs Linux's /proc/self/statm.
func ResidentFile() (int64, error) { return 0, ErrTrimUnsupported }
