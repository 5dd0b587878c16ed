//go:build !(darwin || dragonfly || freebsd || linux || netbsd || openbsd)

package bundle

import "os"

// lockPartial does nothing here: two runs writing the same bundle at once
// are not detected on this platform.
func lockPartial(*os.File) error { return nil }

// renameOpen is false where an open file cannot be renamed (Windows).
const renameOpen = false
