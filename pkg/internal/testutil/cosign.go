package testutil

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// CosignVersion is the cosign CLI the end-to-end tests judge signatures
// and attestations with, built from the Go module proxy.
const CosignVersion = "v2.6.5"

const cosignPackage = "github.com/sigstore/cosign/v2/cmd/cosign"

// Cosign returns the path of the pinned cosign CLI, building it once into
// ToolsDir (several minutes cold) with go install. It skips the test with
// -short.
func Cosign(t testing.TB) string {
	t.Helper()
	return goTool(t, "cosign", cosignPackage, CosignVersion)
}

// OrasVersion is the oras CLI the end-to-end tests judge referrers with.
const OrasVersion = "v1.3.6"

const orasPackage = "oras.land/oras/cmd/oras"

// Oras returns the path of the pinned oras CLI, built as Cosign is.
func Oras(t testing.TB) string {
	t.Helper()
	return goTool(t, "oras", orasPackage, OrasVersion)
}

// goTool returns the path of pkg@version, built once per machine into
// ToolsDir by buildTool. It skips the test with -short.
func goTool(t testing.TB, name, pkg, version string) string {
	t.Helper()
	if testing.Short() {
		t.Skipf("needs the %s CLI: skipped with -short", name)
	}
	path, err := buildTool(pkg, version, name)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// BuildCosign and BuildOras build the pinned CLIs into ToolsDir, for
// `make test-tools`.
func BuildCosign() (string, error) { return buildTool(cosignPackage, CosignVersion, "cosign") }

// BuildOras builds the pinned oras CLI into ToolsDir.
func BuildOras() (string, error) { return buildTool(orasPackage, OrasVersion, "oras") }

// RunOras runs oras with args in dir and fails the test unless it exits
// 0. It returns stdout.
func RunOras(t testing.TB, dir string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, Oras(t), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+dir)
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("oras %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	t.Logf("oras %s: ok", strings.Join(args, " "))
	return stdout.String()
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
