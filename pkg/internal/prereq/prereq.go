// Package prereq records the tests that skip because something they need
// is missing (a tool, a corpus, a kernel feature), so that no test is
// skipped silently: every package prints one summary line of its skips at
// the end of its run, and under CI=true a missing required prerequisite
// fails the test instead of skipping it.
package prereq

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// SkipLogEnv names a file every package appends its summary line to, so
// that `make test` can print the lines together after go test, which hides
// the output of packages that pass.
const SkipLogEnv = "FERRY_TEST_SKIPLOG"

// skips maps a reason to the tests it skipped, in the order they did.
var skips = struct {
	sync.Mutex
	order []string
	tests map[string][]string
}{tests: map[string][]string{}}

// Skip skips t because what it needs is missing here; why says what is
// missing and how to get it, in one line. The skip is recorded for the
// package's summary line. Use it for checks that depend on the machine
// (FIFOs, flock, a pseudo-terminal), which CI may lack too.
func Skip(t testing.TB, why string) {
	t.Helper()
	record(t.Name(), why)
	t.Skip(why)
}

// SkipRequired is Skip for a check CI must run (the Debian registry,
// skopeo, the corpus): under CI=true it fails t with why instead.
func SkipRequired(t testing.TB, why string) {
	t.Helper()
	if InCI() {
		t.Fatalf("%s (CI=true: this check is required)", why)
		return
	}
	Skip(t, why)
}

// WithoutRequired records that t runs without a check CI must run (an
// extra judge that is not installed) and goes on; under CI=true it fails t
// with why instead.
func WithoutRequired(t testing.TB, why string) {
	t.Helper()
	if InCI() {
		t.Fatalf("%s (CI=true: this check is required)", why)
		return
	}
	record(t.Name(), why)
}

// InCI reports whether CI=true, where required checks must not skip.
func InCI() bool {
	return os.Getenv("CI") == "true"
}

func record(test, why string) {
	skips.Lock()
	defer skips.Unlock()
	if _, ok := skips.tests[why]; !ok {
		skips.order = append(skips.order, why)
	}
	skips.tests[why] = append(skips.tests[why], test)
}

// Main runs the package's tests, prints its summary line of skipped
// prerequisites (nothing when none skipped) to stderr and to the file
// named by FERRY_TEST_SKIPLOG, and returns the exit code for os.Exit. A
// package's TestMain calls it, or calls Summary after its own m.Run.
func Main(m *testing.M) int {
	code := m.Run()
	Summary()
	return code
}

// Summary prints the summary line, if any test skipped, once per call.
func Summary() {
	line := summaryLine(packageName())
	if line == "" {
		return
	}
	fmt.Fprintln(os.Stderr, line)
	if path := os.Getenv(SkipLogEnv); path != "" {
		if err := appendLine(path, line); err != nil {
			fmt.Fprintf(os.Stderr, "prereq: writing %s=%s: %v\n", SkipLogEnv, path, err)
		}
	}
}

// summaryLine renders what was skipped as one line: the package, then each
// reason with the tests it skipped.
func summaryLine(pkg string) string {
	skips.Lock()
	defer skips.Unlock()
	if len(skips.order) == 0 {
		return ""
	}
	n := 0
	var parts []string
	for _, why := range skips.order {
		tests := slices.Compact(slices.Sorted(slices.Values(skips.tests[why])))
		n += len(tests)
		parts = append(parts, fmt.Sprintf("%s (%s)", why, strings.Join(tests, ", ")))
	}
	return fmt.Sprintf("SKIPPED in %s: %d check(s) for want of a prerequisite: %s", pkg, n, strings.Join(parts, "; "))
}

// packageName is the test's directory relative to the module root (go test
// runs each package in its own directory), or the directory itself.
func packageName() string {
	wd, err := os.Getwd()
	if err != nil {
		return "?"
	}
	for dir := wd; ; {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			if rel, err := filepath.Rel(dir, wd); err == nil {
				return "./" + filepath.ToSlash(rel)
			}
			return wd
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return wd
		}
		dir = parent
	}
}

// appendLine appends line to path; one short write with O_APPEND keeps
// the lines of packages running in parallel whole.
func appendLine(path, line string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	_, err = io.WriteString(f, line+"\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
