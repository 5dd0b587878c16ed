//go:build !linux

package bundle

import "os"

// startWriteback is a Linux optimisation; elsewhere the final fsync does
// all the work.
func startWriteback(*os.File, int64, int64) {}
