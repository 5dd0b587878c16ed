package testutil

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// CosignVersion is the cosign CLI the end-to-end tests judge signatures
// and attestations with, built from the Go module proxy.
const CosignVersion = "v2.6.5"

const cosignPackage = "github.com/sigstore/cosign/v2/cmd/cosign"

// ToolsDir is where tools built for tests are kept between runs, outside
// the repository: $FERRY_TEST_TOOLS, else ferry-test-tools in the user's
// cache directory.
func ToolsDir() string {
	if d := os.Getenv("FERRY_TEST_TOOLS"); d != "" {
		return d
	}
	d, err := os.UserCacheDir()
	if err != nil {
		d = os.TempDir()
	}
	return filepath.Join(d, "ferry-test-tools")
}

var cosignMu sync.Mutex

// Cosign returns the path of the pinned cosign CLI, building it once into
// ToolsDir (several minutes cold) with go install. It skips the test with
// -short.
func Cosign(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the cosign CLI: skipped with -short")
	}
	cosignMu.Lock()
	defer cosignMu.Unlock()
	dir := filepath.Join(ToolsDir(), "cosign-"+CosignVersion)
	path := filepath.Join(dir, "cosign")
	if _, err := os.Stat(path); err == nil {
		return path
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "install", cosignPackage+"@"+CosignVersion)
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOFLAGS=-mod=mod")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("building cosign: GOBIN=%s go install %s@%s: %v\n%s", dir, cosignPackage, CosignVersion, err, out.Bytes())
	}
	return path
}

// RunCosign runs cosign with args in dir, with env added to the test's
// environment, and fails the test unless it exits 0. It returns stdout.
func RunCosign(t testing.TB, dir string, env []string, args ...string) string {
	t.Helper()
	out, errOut, err := runCosign(t, dir, env, args...)
	if err != nil {
		t.Fatalf("cosign %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, out, errOut)
	}
	t.Logf("cosign %s: ok", strings.Join(args, " "))
	return out
}

func runCosign(t testing.TB, dir string, env []string, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, Cosign(t), args...)
	cmd.Dir = dir
	// No network beyond loopback: cosign must not wait on the public
	// Sigstore services, and keeps its TUF cache in the test's directory.
	cmd.Env = append(os.Environ(), append([]string{"HOME=" + dir, "TUF_ROOT=" + filepath.Join(dir, ".sigstore")}, env...)...)
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// CosignFails runs cosign with args and reports whether it failed, for
// tests that expect a refusal.
func CosignFails(t testing.TB, dir string, env []string, args ...string) bool {
	t.Helper()
	_, _, err := runCosign(t, dir, env, args...)
	return err != nil
}
