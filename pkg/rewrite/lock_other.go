//go:build !(darwin || dragonfly || freebsd || linux || netbsd || openbsd)

package rewrite

import "os"

// lockTemp does nothing here: a temporary file is judged stale by its age
// alone (see removeStale).
func lockTemp(*os.File) {}

// inUse cannot tell here.
func inUse(*os.File) bool { return false }

// closeBeforeRename is true where an open file cannot be renamed (Windows).
const closeBeforeRename = true
