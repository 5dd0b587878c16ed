//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package bundle

import (
	"errors"
	"os"
	"syscall"
)

// lockPartial takes an exclusive, non-blocking lock on the open partial
// file. The kernel drops it when the process dies, so a killed run never
// leaves a stale lock behind. A file system without locks (some NFS
// mounts) is written unguarded rather than refused.
func lockPartial(f *os.File) error {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	switch {
	case errors.Is(err, syscall.EWOULDBLOCK):
		return errBusy
	case errors.Is(err, syscall.ENOLCK), errors.Is(err, syscall.EOPNOTSUPP), errors.Is(err, syscall.ENOSYS):
		return nil
	}
	return err
}

// renameOpen is true where the partial file may be renamed into place
// while still open, so the lock is held until the bundle is at its path.
const renameOpen = true
