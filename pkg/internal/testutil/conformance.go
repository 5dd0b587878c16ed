package testutil

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ConformanceModule and ConformanceVersion pin the OCI distribution-spec
// conformance suite the serve tests run (served by the Go module proxy).
const (
	ConformanceModule  = "github.com/opencontainers/distribution-spec/conformance"
	ConformanceVersion = "v0.0.0-20260831232431-97274622c111"
)

// ConformanceSuite returns the suite's test binary, built with `go test -c`
// in a scratch module the first time and cached under the user's cache
// directory (ferry-test-tools/), outside the repository: later runs, and
// other checkouts, reuse it.
func ConformanceSuite(t testing.TB) string {
	t.Helper()
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "ferry-test-tools")
	bin := filepath.Join(dir, "oci-conformance-"+ConformanceVersion+".test")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	scratch := t.TempDir()
	if err := os.WriteFile(filepath.Join(scratch, "go.mod"), []byte("module ferry.invalid/conformance\n\ngo 1.24\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	run := func(args ...string) {
		t.Helper()
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = scratch
		// The scratch module is not ferry's: no workspace, no vendoring.
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("building the OCI conformance suite: go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("get", ConformanceModule+"@"+ConformanceVersion)
	// Built aside and renamed: two test processes may build at once.
	tmp := fmt.Sprintf("%s.%d.partial", bin, os.Getpid())
	run("test", "-c", "-o", tmp, ConformanceModule)
	if err := os.Rename(tmp, bin); err != nil {
		os.Remove(tmp)
		t.Fatal(err)
	}
	return bin
}

// ConformanceResult is the suite's summary.
type ConformanceResult struct {
	Pass, Fail, Error, Skip, Disabled int
	// Report is the summary block as printed, for logs and docs.
	Report string
	// Output is everything the suite printed.
	Output string
}

var countRE = regexp.MustCompile(`(?m)^\s*(Disabled|Skip|Pass|FAIL|Error)\.+:\s+(\d+)\s*$`)

// RunConformance runs the suite binary with env (OCI_... variables) added
// to the environment, in a temporary directory that takes its results
// files, and parses the "OCI Conformance Result:" block.
func RunConformance(t testing.TB, bin string, env []string) ConformanceResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	cmd := exec.CommandContext(ctx, bin, "-test.v")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "OCI_RESULTS_DIR="+filepath.Join(dir, "results"))
	cmd.Env = append(cmd.Env, env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	runErr := cmd.Run()
	res := ConformanceResult{Output: out.String()}
	i := strings.Index(res.Output, "OCI Conformance Result:")
	if i < 0 {
		t.Fatalf("the conformance suite printed no result (%v):\n%s", runErr, res.Output)
	}
	block := res.Output[i:]
	if j := strings.Index(block, "\n\nData conformance:"); j >= 0 {
		if k := strings.Index(block[j+2:], "\n\n"); k >= 0 {
			block = block[:j+2+k]
		}
	}
	res.Report = block
	for _, m := range countRE.FindAllStringSubmatch(block, 5) {
		n, _ := strconv.Atoi(m[2])
		switch m[1] {
		case "Pass":
			res.Pass = n
		case "FAIL":
			res.Fail = n
		case "Error":
			res.Error = n
		case "Skip":
			res.Skip = n
		case "Disabled":
			res.Disabled = n
		}
	}
	if runErr != nil && !strings.Contains(res.Output, "ReportResultsYAML") {
		t.Errorf("the conformance suite exited with %v after its report", runErr)
	}
	return res
}
