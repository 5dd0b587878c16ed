//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package rewrite

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// lockedStale makes an old temporary file that a running ferry holds
// locked: it must be kept.
func lockedStale(t *testing.T, dir string) []string {
	p := filepath.Join(dir, ".app.yaml.tmp-31337")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Skip("no flock here:", err)
	}
	when := started.Add(-time.Hour)
	os.Chtimes(p, when, when)
	return []string{p}
}
