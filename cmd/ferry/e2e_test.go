package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// ferryBin is the binary built once for every end-to-end test.
var ferryBin string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "ferry-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	ferryBin = filepath.Join(dir, "ferry")
	build := exec.Command("go", "build", "-o", ferryBin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building ferry:", err)
		return 1
	}
	return m.Run()
}

// result is what one run of the binary printed and how it exited.
type result struct {
	Stdout, Stderr string
	Code           int
}

// runFerry runs the built binary with args in dir (cwd when ""), bounded in time.
func runFerry(t testing.TB, dir string, stdin []byte, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, ferryBin, args...)
	cmd.Dir = dir
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{Stdout: out.String(), Stderr: errb.String()}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		r.Code = exit.ExitCode()
	default:
		t.Fatalf("running ferry %v: %v", args, err)
	}
	t.Logf("ferry %v -> exit %d\nstderr: %s", args, r.Code, r.Stderr)
	return r
}

// mustFerry runs ferry and fails the test unless it exits 0.
func mustFerry(t testing.TB, dir string, args ...string) result {
	t.Helper()
	r := runFerry(t, dir, nil, args...)
	if r.Code != 0 {
		t.Fatalf("ferry %v: exit %d, stderr:\n%s", args, r.Code, r.Stderr)
	}
	return r
}

func TestVersionAndUsage(t *testing.T) {
	r := mustFerry(t, "", "version")
	if !bytes.HasPrefix([]byte(r.Stdout), []byte("ferry ")) {
		t.Errorf("version stdout = %q, want it to start with \"ferry \"", r.Stdout)
	}
	r = runFerry(t, "", nil, "no-such-command")
	if r.Code != 2 {
		t.Errorf("unknown command: exit %d, want 2", r.Code)
	}
	if n := bytes.Count([]byte(r.Stderr), []byte("\n")); n != 1 {
		t.Errorf("unknown command: stderr has %d lines, want one:\n%s", n, r.Stderr)
	}
}
