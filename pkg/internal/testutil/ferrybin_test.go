package testutil

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestRunFerry(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the ferry binary")
	}
	dir := t.TempDir()
	if a, b := Ferry(t), Ferry(t); a != b {
		t.Errorf("Ferry built twice: %s, then %s", a, b)
	}

	r := MustFerry(t, dir, "version")
	if r.Stdout == "" {
		t.Error("ferry version printed nothing on stdout")
	}

	r = RunFerry(t, dir, nil, "pkg", "--no-such-flag")
	if r.Code != 2 || len(r.Lines()) != 1 || !strings.Contains(r.Stderr, "no-such-flag") {
		t.Errorf("wrong usage: exit %d, stderr %q; want 2 and one line naming the flag", r.Code, r.Stderr)
	}

	// stdin reaches ferry: scan of a Pod on stdin prints its image.
	pod := []byte("apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: c\n    image: example.com/app:v1\n")
	r = RunFerry(t, dir, pod, "scan", "-f", "-")
	if r.Code != 0 || !strings.Contains(r.Stdout, "example.com/app:v1") {
		t.Errorf("scan -f - of a Pod on stdin: exit %d, stdout %q", r.Code, r.Stdout)
	}
}

func TestStartFerryKill(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the ferry binary")
	}
	// A blackholed registry keeps resolve waiting long enough to kill it.
	hole := StartBlackhole(t)
	dir := t.TempDir()
	pod := "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: c\n    image: " + hole + "/app:v1\n"
	if err := os.WriteFile(filepath.Join(dir, "pod.yaml"), []byte(pod), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := StartFerry(t, dir, "resolve", "-f", "pod.yaml", "--insecure-registry", hole)
	time.Sleep(200 * time.Millisecond)
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("Wait after Kill: %v, want death by SIGKILL", err)
	}
	if _, ok := cmd.Stderr.(*bytes.Buffer); !ok {
		t.Errorf("Stderr is %T, want *bytes.Buffer", cmd.Stderr)
	}
}
