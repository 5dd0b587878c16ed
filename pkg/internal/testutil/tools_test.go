package testutil

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	os.Exit(Main(m))
}

func TestRegistryKinds(t *testing.T) {
	t.Setenv(RegistryEnv, "")
	if got, want := RegistryKinds(), []RegistryKind{Distribution3, Debian}; !slices.Equal(got, want) {
		t.Errorf("kinds = %v, want %v", got, want)
	}
	if got := defaultKind(); got != Distribution3 {
		t.Errorf("default = %s, want %s", got, Distribution3)
	}
	t.Setenv(RegistryEnv, string(Debian))
	if got, want := RegistryKinds(), []RegistryKind{Debian}; !slices.Equal(got, want) {
		t.Errorf("%s=debian: kinds = %v, want %v", RegistryEnv, got, want)
	}
	if got := defaultKind(); got != Debian {
		t.Errorf("%s=debian: default = %s", RegistryEnv, got)
	}
}

// toolPath is where buildTool keeps name for pkg@version under dir.
func toolPath(dir, pkg, version, name string) string {
	return filepath.Join(dir, filepath.FromSlash(pkg+"@"+version), name)
}

func TestBuildToolReusesTheCache(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(ToolsDirEnv, dir)
	// Any run of go would fail: nothing can be downloaded.
	t.Setenv("GOPROXY", "off")
	want := toolPath(dir, "example.com/tool/cmd/tool", "v1.0.0", "tool")
	if err := os.MkdirAll(filepath.Dir(want), 0o755); err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, want, []byte("#!/bin/sh\n"))
	got, err := buildTool("example.com/tool/cmd/tool", "v1.0.0", "tool")
	if err != nil || got != want {
		t.Errorf("got %q, %v; want the cached %s", got, err, want)
	}
}

func TestBuildToolWaitsForTheLock(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(ToolsDirEnv, dir)
	t.Setenv("GOPROXY", "off")
	path := toolPath(dir, "example.com/tool/cmd/tool", "v1.0.0", "tool")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	// Another test process is building: it holds the lock.
	unlock, err := lockDir(filepath.Join(filepath.Dir(path), ".lock"))
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		path string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		p, err := buildTool("example.com/tool/cmd/tool", "v1.0.0", "tool")
		done <- result{p, err}
	}()
	select {
	case r := <-done:
		unlock()
		t.Fatalf("buildTool returned %q, %v while another process held the lock", r.path, r.err)
	case <-time.After(300 * time.Millisecond):
	}
	// The other process finishes its build and lets go.
	writeTestFile(t, path, []byte("#!/bin/sh\n"))
	unlock()
	r := <-done
	if r.err != nil || r.path != path {
		t.Errorf("after the lock: %q, %v; want the other process's %s without a build", r.path, r.err, path)
	}
}

func TestBuildToolFailureIsOneLine(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(ToolsDirEnv, dir)
	t.Setenv("GOPROXY", "off")
	_, err := buildTool("example.com/no/such/cmd/tool", "v0.0.1", "tool")
	if err == nil {
		t.Fatal("a tool that cannot be downloaded was built")
	}
	msg := err.Error()
	for _, want := range []string{"go install example.com/no/such/cmd/tool@v0.0.1", "GOPROXY=off", "module proxy", "build.log"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q: %s", want, msg)
		}
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("error spans several lines: %s", msg)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "*", "*", "*", "*", ".build-*"))
	if len(left) != 0 {
		t.Errorf("temporary build directories left: %v", left)
	}
}
