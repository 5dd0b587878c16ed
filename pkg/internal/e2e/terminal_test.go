package e2e

import (
	"bytes"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/pkg/internal/prereq"
	"github.com/ferry-dev/ferry/pkg/internal/testutil"
)

// onTerminal runs ferry under script(1), whose pseudo-terminal is cols
// wide, and returns what the terminal received and ferry's exit code.
func onTerminal(t *testing.T, dir string, cols int, args ...string) (string, int) {
	t.Helper()
	script, err := exec.LookPath("script")
	if err != nil {
		prereq.Skip(t, "script(1) not installed: no pseudo-terminal to test the bar on")
	}
	// A sandbox without /dev/pts cannot give one either.
	if out, err := exec.CommandContext(t.Context(), script, "-qfec", "test -t 2", "/dev/null").CombinedOutput(); err != nil {
		prereq.Skip(t, fmt.Sprintf("script(1) cannot make a pseudo-terminal here: %v %s", err, bytes.TrimSpace(out)))
	}
	cmdline := fmt.Sprintf("stty cols %d rows 40; exec %s %s", cols, testutil.Ferry(t), strings.Join(args, " "))
	cmd := exec.CommandContext(t.Context(), script, "-qfec", cmdline, "/dev/null")
	cmd.Dir = dir
	out, err := cmd.Output()
	code := 0
	if exit, ok := err.(*exec.ExitError); ok {
		code = exit.ExitCode()
	} else if err != nil {
		t.Fatalf("script -c %q: %v", cmdline, err)
	}
	return string(out), code
}

// TestProgressOnATerminal runs pkg on a pseudo-terminal: a bar is drawn
// and redrawn in place, no redraw is wider than the terminal (it would
// wrap and leave lines behind), the bar's line is ended before the log
// line, and after a failure the bar is left where it stopped and the
// error starts a line of its own.
func TestProgressOnATerminal(t *testing.T) {
	skipShort(t)
	dir := t.TempDir()
	src, std := standardSource(t)
	ims := images(std, src.Host)
	lockPath := writeLock(t, dir, "images.lock.yaml", ims)
	const cols = 100

	out, code := onTerminal(t, dir, cols, "pkg", "--lock", lockPath, "-o", "bundle.tar", "--insecure-registry", src.Host)
	if code != 0 {
		t.Fatalf("ferry pkg on a terminal: exit %d:\n%q", code, out)
	}
	redraws := strings.FieldsFunc(out, func(r rune) bool { return r == '\r' || r == '\n' })
	bars := 0
	for _, r := range redraws {
		r = strings.TrimRight(r, " ")
		if strings.Contains(r, "images") && strings.Contains(r, "%") {
			bars++
			if n := len([]rune(r)); n > cols {
				t.Errorf("a redraw is %d columns on a %d-column terminal: %q", n, cols, r)
			}
		}
	}
	if bars == 0 {
		t.Fatalf("no bar drawn on a terminal:\n%q", out)
	}
	done := fmt.Sprintf("%d/%d images", len(ims), len(ims))
	if !regexp.MustCompile(regexp.QuoteMeta(done) + `[^\r\n]*100%[^\r\n]*\r?\n` + `wrote bundle\.tar: `).MatchString(out) {
		t.Errorf("want the last bar (%s, 100%%) ended by a newline before the summary; the terminal got:\n%q", done, out[max(len(out)-600, 0):])
	}

	// A blob corrupted on the way fails the run partway.
	proxy := testutil.StartFaultProxy(t, src.Host)
	via := images(std, proxy.Host)
	layer := std.Shared[1].Blobs[3]
	proxy.Add(testutil.Fault{Method: "GET", Kind: testutil.KindBlob, PathContains: layer, Status: 404})
	lockPath = writeLock(t, dir, "via.lock.yaml", via)
	out, code = onTerminal(t, dir, cols, "pkg", "--lock", lockPath, "-o", "failed.tar", "--insecure-registry", proxy.Host)
	if code != 1 {
		t.Fatalf("ferry pkg with a missing blob: exit %d, want 1:\n%q", code, out)
	}
	// The missing blob's bytes never arrive, so 100% would be a lie.
	if !regexp.MustCompile(`\n(\r)?error: `).MatchString(out) || strings.Contains(out, "100%") {
		t.Errorf("want the error on a line of its own and the bar not filled; the terminal got:\n%q", out[max(len(out)-600, 0):])
	}
}
