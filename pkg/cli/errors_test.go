package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestExitCode(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"success", nil, 0},
		{"usage", &UsageError{Err: errors.New("bad flag")}, 2},
		{"cobra unknown command", errors.New(`unknown command "x" for "ferry"`), 2},
		{"cobra required flag", errors.New(`required flag(s) "lock" not set`), 2},
		{"a system error is no usage error", fmt.Errorf("writing bundle: %w", syscall.EINVAL), 1},
		{"work error", errors.New("resolving \"x\": 404"), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ExitCode(tt.err); got != tt.want {
				t.Errorf("ExitCode(%v) = %d, want %d", tt.err, got, tt.want)
			}
		})
	}
}

func TestPkgChecksOutputBeforeWork(t *testing.T) {
	dir := t.TempDir()
	lockFile := filepath.Join(dir, "images.lock.yaml")
	// A lock naming a registry that does not exist: the output is checked
	// first, so the error is about -o and comes at once.
	os.WriteFile(lockFile, []byte("apiVersion: ferry.dev/v1alpha1\nkind: ImagesLock\nimages:\n- image: r.invalid/x:1\n  digest: sha256:"+strings.Repeat("a", 64)+"\n  resolved: r.invalid/x@sha256:"+strings.Repeat("a", 64)+"\n"), 0o644)
	for _, tt := range []struct{ out, want string }{
		{filepath.Join(dir, "missing", "b.tar"), "does not exist"},
		{dir, "is a directory"},
	} {
		_, stderr, code := runCLI(t, "", "pkg", "--lock", lockFile, "-o", tt.out)
		if code != 1 || !strings.Contains(stderr, tt.want) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("pkg -o %s: exit %d, stderr %q; want exit 1 and one line saying %q", tt.out, code, stderr, tt.want)
		}
	}
}

func TestQuietSilencesInfo(t *testing.T) {
	var b strings.Builder
	newLogger(&b, false, true).Info("wrote lock")
	newLogger(&b, false, true).Warn("tag moved")
	if strings.Contains(b.String(), "wrote lock") || !strings.Contains(b.String(), "tag moved") {
		t.Errorf("--quiet log output = %q, want warnings only", b.String())
	}
}
