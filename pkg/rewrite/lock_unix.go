//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package rewrite

import (
	"errors"
	"os"
	"syscall"
)

// lockTemp takes an exclusive lock on a temporary file being written. The
// kernel drops it when the process dies, so a killed run's files become
// removable; a file system without locks is written unguarded.
func lockTemp(f *os.File) {
	syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
}

// inUse reports whether another process holds the lock of f.
func inUse(f *os.File) bool {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	return errors.Is(err, syscall.EWOULDBLOCK)
}

// closeBeforeRename is false where an open file may be renamed: the lock
// is then held until the file is in place.
const closeBeforeRename = false
