package testutil

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/pkg/internal/prereq"
)

// FerryTimeout bounds one RunFerry: far above what any end-to-end run
// needs, so that a hang fails the test instead of the whole go test run.
const FerryTimeout = 3 * time.Minute

var (
	ferryOnce sync.Once
	ferryPath string
	ferryErr  error
)

// Ferry builds the ferry binary once per test process and returns its
// path. End-to-end tests run it as a user would, so they test main's exit
// codes and error printing too. The binary lives in a temporary directory
// that outlives the test: every test of the process shares it.
func Ferry(t testing.TB) string {
	t.Helper()
	ferryOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ferry-e2e-bin-")
		if err != nil {
			ferryErr = fmt.Errorf("building ferry: %w", err)
			return
		}
		path := filepath.Join(dir, "ferry")
		cmd := exec.Command("go", "build", "-o", path, "github.com/ferry-dev/ferry/cmd/ferry")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			ferryErr = fmt.Errorf("go build github.com/ferry-dev/ferry/cmd/ferry: %v\n%s", err, out.Bytes())
			return
		}
		ferryPath = path
	})
	if ferryErr != nil {
		t.Fatal(ferryErr)
	}
	return ferryPath
}

// RemoveFerry deletes the binary Ferry built, if it did. The binary
// outlives every single test, so the package's TestMain calls it (or Main)
// after m.Run.
func RemoveFerry() {
	if ferryPath != "" {
		_ = os.RemoveAll(filepath.Dir(ferryPath))
	}
}

// Main is a TestMain for packages that use these helpers: it runs the
// tests, prints the summary line of prerequisites skipped and removes the
// ferry binary.
func Main(m *testing.M) int {
	code := prereq.Main(m)
	RemoveFerry()
	return code
}

// Result is what one run of ferry printed and how it exited.
type Result struct {
	Stdout, Stderr string
	// Code is the exit status: 0, 1 or 2 for ferry's own exits, -1 when
	// the process was killed by a signal.
	Code int
	// Took is the wall time of the run.
	Took time.Duration
}

// Lines returns the non-empty lines of stderr.
func (r Result) Lines() []string {
	var out []string
	for _, l := range strings.Split(r.Stderr, "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

// RunFerry runs the ferry binary with args in dir (the test's working
// directory when empty), stdin as its standard input (none when nil), and
// the test process's environment: tests set DOCKER_CONFIG and the like
// with t.Setenv. A run past FerryTimeout is killed and fails the test.
func RunFerry(t testing.TB, dir string, stdin []byte, args ...string) Result {
	t.Helper()
	r := runBounded(t, "ferry", args, FerryTimeout, stdin, func(ctx context.Context) *exec.Cmd {
		cmd := exec.CommandContext(ctx, Ferry(t), args...)
		cmd.Dir = dir
		return cmd
	})
	t.Logf("ferry %s -> exit %d in %v\nstderr: %s", strings.Join(args, " "), r.Code, r.Took.Round(time.Millisecond), r.Stderr)
	return r
}

// runBounded runs the command newCmd makes under a limit of timeout and
// returns its output and exit code; no exit within the limit, or a
// command that cannot start, fails t. name and args say what ran, in
// messages. Output pipes held open by a stray grandchild do not hang it.
func runBounded(t testing.TB, name string, args []string, timeout time.Duration, stdin []byte, newCmd func(context.Context) *exec.Cmd) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := newCmd(ctx)
	cmd.WaitDelay = 5 * time.Second
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r := Result{Stdout: stdout.String(), Stderr: stderr.String(), Took: time.Since(start)}
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("%s %s: no exit within %v; stderr:\n%s", name, strings.Join(args, " "), timeout, r.Stderr)
	case err == nil:
	case errors.As(err, &exit):
		r.Code = exit.ExitCode()
	default:
		t.Fatalf("running %s %s: %v", name, strings.Join(args, " "), err)
	}
	return r
}

// MustFerry is RunFerry without stdin that fails the test unless ferry
// exits 0.
func MustFerry(t testing.TB, dir string, args ...string) Result {
	t.Helper()
	r := RunFerry(t, dir, nil, args...)
	if r.Code != 0 {
		t.Fatalf("ferry %s: exit %d, stderr:\n%s", strings.Join(args, " "), r.Code, r.Stderr)
	}
	return r
}

// StartFerry starts ferry with args in dir and returns at once, for tests
// that kill it midway (cmd.Process.Kill is kill -9). Its Stdout and Stderr
// are *bytes.Buffer, to be read after cmd.Wait. The process is killed and
// reaped when the test ends, if the test has not done so.
func StartFerry(t testing.TB, dir string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(Ferry(t), args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = &bytes.Buffer{}, &bytes.Buffer{}
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting ferry %s: %v", strings.Join(args, " "), err)
	}
	t.Cleanup(func() {
		// Both fail harmlessly when the test already killed and waited.
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd
}
