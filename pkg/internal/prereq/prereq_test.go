package prereq

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeT records what Skip and Fatal would do to a test, without ending
// the goroutine as the real ones do.
type fakeT struct {
	testing.TB
	name            string
	skipped, failed string
}

func (f *fakeT) Helper()                           {}
func (f *fakeT) Name() string                      { return f.name }
func (f *fakeT) Skip(args ...any)                  { f.skipped = fmt.Sprint(args...) }
func (f *fakeT) Fatalf(format string, args ...any) { f.failed = fmt.Sprintf(format, args...) }

// fresh empties the record for one test and restores it afterwards.
func fresh(t *testing.T) {
	t.Helper()
	skips.Lock()
	order, tests := skips.order, skips.tests
	skips.order, skips.tests = nil, map[string][]string{}
	skips.Unlock()
	t.Cleanup(func() {
		skips.Lock()
		skips.order, skips.tests = order, tests
		skips.Unlock()
	})
}

func TestSkipIsRecorded(t *testing.T) {
	fresh(t)
	t.Setenv("CI", "")
	a := &fakeT{name: "TestA"}
	Skip(a, "no FIFOs here")
	b := &fakeT{name: "TestB/sub"}
	SkipRequired(b, "skopeo not installed: apt-get install -y skopeo")
	c := &fakeT{name: "TestC"}
	WithoutRequired(c, "skopeo not installed: apt-get install -y skopeo")

	for _, f := range []*fakeT{a, b} {
		if f.skipped == "" || f.failed != "" {
			t.Errorf("%s: skipped %q, failed %q; want a skip", f.name, f.skipped, f.failed)
		}
	}
	if c.skipped != "" || c.failed != "" {
		t.Errorf("WithoutRequired: skipped %q, failed %q; want the test to go on", c.skipped, c.failed)
	}
	got := summaryLine("./pkg/x")
	want := "SKIPPED in ./pkg/x: 3 check(s) for want of a prerequisite: no FIFOs here (TestA); " +
		"skopeo not installed: apt-get install -y skopeo (TestB/sub, TestC)"
	if got != want {
		t.Errorf("summary line:\n got %s\nwant %s", got, want)
	}
}

func TestNothingSkippedPrintsNothing(t *testing.T) {
	fresh(t)
	if got := summaryLine("./pkg/x"); got != "" {
		t.Errorf("summary line with no skips = %q, want none", got)
	}
}

func TestRequiredFailsInCI(t *testing.T) {
	fresh(t)
	t.Setenv("CI", "true")
	f := &fakeT{name: "TestD"}
	SkipRequired(f, "Debian's docker-registry not installed")
	if f.failed == "" || f.skipped != "" {
		t.Errorf("under CI=true: skipped %q, failed %q; want a failure", f.skipped, f.failed)
	}
	if !strings.Contains(f.failed, "Debian's docker-registry not installed") {
		t.Errorf("failure %q does not say what is missing", f.failed)
	}
	h := &fakeT{name: "TestG"}
	WithoutRequired(h, "skopeo not installed")
	if h.failed == "" {
		t.Errorf("WithoutRequired under CI=true did not fail")
	}
	// A machine-dependent check still skips in CI.
	g := &fakeT{name: "TestE"}
	Skip(g, "no flock here")
	if g.skipped == "" || g.failed != "" {
		t.Errorf("optional check under CI=true: skipped %q, failed %q; want a skip", g.skipped, g.failed)
	}
}

func TestSummaryAppendsToTheLog(t *testing.T) {
	fresh(t)
	log := filepath.Join(t.TempDir(), "skips.log")
	t.Setenv(SkipLogEnv, log)
	if err := os.WriteFile(log, []byte("SKIPPED in ./other: earlier line\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	Summary() // nothing skipped: nothing written
	Skip(&fakeT{name: "TestF"}, "corpus not found")
	Summary()
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	want := "SKIPPED in ./other: earlier line\n" +
		"SKIPPED in ./pkg/internal/prereq: 1 check(s) for want of a prerequisite: corpus not found (TestF)\n"
	if string(b) != want {
		t.Errorf("log:\n%s\nwant:\n%s", b, want)
	}
}
