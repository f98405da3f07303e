package journal

import (
	"os"
	"syscall"
)

// datasync is fdatasync: a record's bytes and the file's new size, not its
// times.
func datasync(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }
