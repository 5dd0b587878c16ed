package cli

import (
	"bytes"
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/pkg/progress"
)

func TestProgressOffATerminal(t *testing.T) {
	var b bytes.Buffer
	o := &rootOptions{}
	p := o.progress(&b)
	p.Start(100, 2)
	p.Add(60)
	p.ImageDone("nginx:1.25", "pushed")
	p.Add(40)
	p.ImageDone("gcr.io/x/y:v1", "already present")
	p.Finish()
	want := "[1/2] nginx:1.25: pushed\n[2/2] gcr.io/x/y:v1: already present\n"
	if b.String() != want {
		t.Errorf("plain progress = %q, want %q", b.String(), want)
	}

	b.Reset()
	o.quiet = true
	if _, ok := o.progress(&b).(progress.Nop); !ok {
		t.Error("--quiet does not silence progress")
	}
}

// bar draws through a barReporter of a terminal cols wide and returns the
// lines as the terminal would show them last: each redraw starts with \r.
func bar(t *testing.T, cols int, run func(p progress.Reporter)) (lines []string, raw string) {
	t.Helper()
	var b bytes.Buffer
	run(&barReporter{w: &b, cols: cols})
	raw = b.String()
	for _, line := range strings.Split(raw, "\n") {
		parts := strings.Split(line, "\r")
		lines = append(lines, strings.TrimRight(parts[len(parts)-1], " "))
	}
	return lines, raw
}

func TestBarOnATerminal(t *testing.T) {
	long := "registry.k8s.io/ingress-nginx/controller-chroot:v1.11.2@sha256:" + strings.Repeat("ab", 32)
	for cols, want := range map[int]string{
		80:  "2/2 images 100%",
		120: "2/2 images, last controller-chroot:v1.11.2 (bundled) 100%",
		160: "2/2 images, last registry.k8s.io/ingress-nginx/controller-chroot:v1.11.2 (bundled) 100%",
	} {
		lines, raw := bar(t, cols, func(p progress.Reporter) {
			p.Start(400<<20, 2)
			p.Add(300 << 20)
			p.ImageDone("nginx:1.25", "bundled")
			p.Add(100 << 20)
			p.ImageDone(long, "bundled")
			p.Finish()
		})
		if !strings.HasSuffix(raw, "\n") {
			t.Errorf("%d columns: the bar's line is not ended after Finish: %q", cols, raw[max(len(raw)-80, 0):])
		}
		if last := lines[len(lines)-2]; !strings.HasPrefix(last, want) {
			t.Errorf("%d columns: last bar line %q, want it to start %q", cols, last, want)
		}
		for _, redraw := range strings.FieldsFunc(raw, func(r rune) bool { return r == '\r' || r == '\n' }) {
			if n := len([]rune(strings.TrimRight(redraw, " "))); n > cols {
				t.Errorf("a redraw is %d columns on a %d-column terminal, so it wraps: %q", n, cols, redraw)
			}
		}
	}

	// A failed run: the bar stays where it was, and the error that
	// follows starts on its own line.
	lines, raw := bar(t, 80, func(p progress.Reporter) {
		p.Start(100, 2)
		p.Add(40)
		p.Finish()
	})
	if !strings.HasSuffix(raw, "\n") || strings.Contains(raw, "100%") {
		t.Errorf("a bar finished after a failure at 40%%: %q; want it left at 40%% and its line ended", raw)
	}
	if last := lines[len(lines)-2]; !strings.Contains(last, "40%") {
		t.Errorf("last bar line after a failure %q, want 40%%", last)
	}
}

func TestShortRef(t *testing.T) {
	d := "sha256:" + strings.Repeat("ab", 32)
	for in, want := range map[string]string{
		"nginx:1.25":                          "nginx:1.25",
		"registry.k8s.io/pause:3.9@" + d:      "registry.k8s.io/pause:3.9",
		"localhost:5000/app@" + d:             "localhost:5000/app@sha256:abababababab",
		"gcr.io/distroless/static@sha256:abc": "gcr.io/distroless/static@sha256:abc",
	} {
		if got := shortRef(in); got != want {
			t.Errorf("shortRef(%q) = %q, want %q", in, got, want)
		}
	}
}

// The bar counts in the binary units every summary uses.
func TestBarUsesBinaryUnits(t *testing.T) {
	lines, _ := bar(t, 120, func(p progress.Reporter) {
		p.Start(400<<20, 1)
		p.Add(400 << 20)
		p.ImageDone("nginx:1.25", "bundled")
		p.Finish()
	})
	last := lines[len(lines)-2]
	if !strings.Contains(last, "400 MiB") || strings.Contains(last, " MB") {
		t.Errorf("last bar line %q, want sizes in MiB", last)
	}
}
