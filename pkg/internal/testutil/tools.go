package testutil

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/pkg/internal/prereq"
)

// RegistryKind names the registry program a test runs against.
type RegistryKind string

const (
	// Distribution3 is distribution v3's registry (cmd/registry), built
	// from the Go module proxy once into the tool cache: every machine
	// with Go has it. It is the default.
	Distribution3 RegistryKind = "distribution3"
	// Debian is Debian's /usr/bin/docker-registry (distribution 2.8), which
	// CI installs; the main flows run against it too where it is installed.
	Debian RegistryKind = "debian"
)

// The test registry's module and version: the one place they are pinned.
const (
	distributionModule  = "github.com/distribution/distribution/v3"
	distributionPackage = distributionModule + "/cmd/registry"
	// DistributionVersion is the version of distribution the tests build.
	DistributionVersion = "v3.1.2"
)

// Environment variables the test helpers read.
const (
	// RegistryEnv (distribution3 or debian) picks the registry every test
	// runs against, instead of the default and the per-kind subtests.
	RegistryEnv = "FERRY_TEST_REGISTRY"
	// NoSystemToolsEnv=1 makes the helpers ignore an installed
	// docker-registry and skopeo, as on a machine that has only Go.
	NoSystemToolsEnv = "FERRY_TEST_NO_SYSTEM_TOOLS"
	// ToolsDirEnv overrides the directory built test tools are cached in
	// (default: the user cache directory's ferry-test-tools).
	ToolsDirEnv = "FERRY_TEST_TOOLS"
)

// debianRegistry is where Debian's docker-registry package installs it.
const debianRegistry = "/usr/bin/docker-registry"

// buildTimeout bounds the one build of a test tool, downloads included.
const buildTimeout = 45 * time.Minute // cosign takes ~10 minutes cold on 2 idle cores

// RegistryKinds lists the registries the main flows (relocate, pkg, unpkg)
// run against, each as a subtest: distribution v3 and Debian's 2.8, or
// only the one FERRY_TEST_REGISTRY names. Debian's is listed even where it
// is not installed: starting it then records a skip (a failure under
// CI=true).
func RegistryKinds() []RegistryKind {
	if k := RegistryKind(os.Getenv(RegistryEnv)); k != "" {
		return []RegistryKind{k}
	}
	return []RegistryKind{Distribution3, Debian}
}

// defaultKind is the registry a test gets when it names none.
func defaultKind() RegistryKind {
	if k := RegistryKind(os.Getenv(RegistryEnv)); k != "" {
		return k
	}
	return Distribution3
}

// noSystemTools reports whether installed tools are to be ignored.
func noSystemTools() bool {
	v := os.Getenv(NoSystemToolsEnv)
	return v != "" && v != "0" && v != "false"
}

// registryBinary returns the program that serves kind, building it on
// first use; a registry that cannot be had skips or fails t in one line.
func registryBinary(t testing.TB, kind RegistryKind) string {
	t.Helper()
	switch kind {
	case Distribution3:
		path, err := distributionBinary()
		if err != nil {
			t.Fatal(err)
		}
		return path
	case Debian:
		why := "Debian's docker-registry (distribution 2.8) not found at " + debianRegistry + ": apt-get install -y docker-registry"
		if noSystemTools() {
			why = "Debian's docker-registry ignored (" + NoSystemToolsEnv + " is set)"
		}
		if _, err := os.Stat(debianRegistry); err != nil || noSystemTools() {
			if os.Getenv(RegistryEnv) == string(Debian) {
				t.Fatalf("%s=%s: %s", RegistryEnv, Debian, why)
			}
			prereq.SkipRequired(t, why)
		}
		return debianRegistry
	default:
		t.Fatalf("registry kind %q unknown: set %s to %s or %s", kind, RegistryEnv, Distribution3, Debian)
		return ""
	}
}

var distribution struct {
	once sync.Once
	path string
	err  error
}

// BuildRegistry returns the path of distribution's registry at
// DistributionVersion, building it into ToolsDir on first use.
func BuildRegistry() (string, error) {
	return distributionBinary()
}

// distributionBinary builds distribution's registry once per machine (per
// version) and once per test process looks for it.
func distributionBinary() (string, error) {
	distribution.once.Do(func() {
		distribution.path, distribution.err = buildTool(distributionPackage, DistributionVersion, "registry")
	})
	return distribution.path, distribution.err
}

// ToolsDir is where built test tools are kept between runs: outside the
// repository, shared by every checkout of the user.
func ToolsDir() string {
	if d := os.Getenv(ToolsDirEnv); d != "" {
		return d
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "ferry-test-tools")
	}
	return filepath.Join(os.TempDir(), "ferry-test-tools")
}

// buildTool returns the path of the command pkg@version, which `go install`
// builds from the module proxy into the tools directory on first use.
// `go install pkg@version` resolves the tool's own module graph, not
// ferry's go.mod. A lock file makes test processes running in parallel
// wait for one build instead of each doing it.
func buildTool(pkg, version, name string) (string, error) {
	if runtime.GOOS == "windows" {
		name += ".exe"
	}
	dir := filepath.Join(ToolsDir(), filepath.FromSlash(pkg+"@"+version))
	path := filepath.Join(dir, name)
	if isFile(path) {
		return path, nil
	}
	what := "go install " + pkg + "@" + version
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("building the test tool (%s): %w (set %s to a writable directory)", what, err, ToolsDirEnv)
	}
	unlock, err := lockDir(filepath.Join(dir, ".lock"))
	if err != nil {
		return "", fmt.Errorf("building the test tool (%s): %w", what, err)
	}
	defer unlock()
	// Another process may have built it while this one waited.
	if isFile(path) {
		return path, nil
	}
	// Builds cut short (a test process killed at its time limit) left
	// their directories; none is running while the lock is held.
	if stale, _ := filepath.Glob(filepath.Join(dir, ".build-*")); len(stale) > 0 {
		for _, d := range stale {
			_ = os.RemoveAll(d)
		}
	}
	tmp, err := os.MkdirTemp(dir, ".build-")
	if err != nil {
		return "", fmt.Errorf("building the test tool (%s): %w", what, err)
	}
	defer os.RemoveAll(tmp)
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "install", pkg+"@"+version)
	// Outside any module, with the tool's own go.mod and no cgo (which would
	// need a C compiler); the user's GOPROXY, GOCACHE and GOMODCACHE apply.
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "GOBIN="+tmp, "GOFLAGS=-mod=mod", "GOWORK=off", "CGO_ENABLED=0")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	fmt.Fprintf(os.Stderr, "testutil: building the test tool once into %s (%s)\n", dir, what)
	if err := cmd.Run(); err != nil {
		logPath := filepath.Join(dir, "build.log")
		_ = os.WriteFile(logPath, out.Bytes(), 0o644)
		return "", fmt.Errorf("building the test tool (%s) failed: %v: %s (full log: %s; the first build needs the Go module proxy)", what, err, lastLine(out.String()), logPath)
	}
	if err := os.Rename(filepath.Join(tmp, name), path); err != nil {
		return "", fmt.Errorf("building the test tool (%s): %w", what, err)
	}
	return path, nil
}

func isFile(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular()
}

// lastLine is the last non-empty line of s, where go reports the error.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
