package rewrite

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/pkg/scan"
)

// pods produces n Pod documents on demand and counts what was read.
type pods struct {
	n, next int
	buf     bytes.Buffer
	read    int
}

func (p *pods) Read(b []byte) (int, error) {
	for p.buf.Len() < len(b) && p.next < p.n {
		fmt.Fprintf(&p.buf, "---\napiVersion: v1\nkind: Pod # %d\nspec:\n  containers:\n  - name: c\n    image: nginx:1.25 # keep\n", p.next)
		p.next++
	}
	if p.buf.Len() == 0 {
		return 0, io.EOF
	}
	n, _ := p.buf.Read(b)
	p.read += n
	return n, nil
}

// firstWrite records how much input had been read when output began.
type firstWrite struct {
	src *pods
	at  int
	bytes.Buffer
}

func (w *firstWrite) Write(b []byte) (int, error) {
	if w.Len() == 0 {
		w.at = w.src.read
	}
	return w.Buffer.Write(b)
}

// TestRewriteStreams holds the streaming property of rewrite: output
// begins while most of the input is still unread, and every document is
// rewritten.
func TestRewriteStreams(t *testing.T) {
	const n = 20000 // about 1.8 MiB
	src := &pods{n: n}
	w := &firstWrite{src: src}
	res, err := Rewrite(context.Background(), []string{"-"}, Options{Map: relocate, Scan: scan.Options{Stdin: src}}, w)
	if err != nil {
		t.Fatal(err)
	}
	if res.Rewritten != n || res.Found != n {
		t.Errorf("rewrote %d of %d, want %d", res.Rewritten, res.Found, n)
	}
	if len(res.Refs) != 0 {
		t.Errorf("the result holds all %d references: memory would grow with the stream", len(res.Refs))
	}
	if w.at > 512<<10 {
		t.Errorf("output began after %d bytes of input were read, want under 512 KiB", w.at)
	}
	to, _ := relocate("nginx:1.25")
	if got := strings.Count(w.String(), "    image: "+to+" # keep\n"); got != n {
		t.Errorf("%d rewritten lines in the output, want %d", got, n)
	}
}

// TestInPlaceRemovesStale checks that the temporary files a killed run
// left beside a file are removed by the next run, and nothing else is.
func TestInPlaceRemovesStale(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string, age time.Duration) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		when := started.Add(-age)
		if err := os.Chtimes(p, when, when); err != nil {
			t.Fatal(err)
		}
		return p
	}
	target := write("app.yaml", "image: nginx:1.25\n", time.Hour)
	write("other.yaml", "image: redis:7\n", time.Hour)
	stale := write(".app.yaml.tmp-123456", "image: half", time.Hour)
	keep := []string{
		write(".app.yaml.tmp-abc", "not ours", time.Hour),             // not our pattern
		write(".app.yaml.tmp-", "not ours", time.Hour),                // no digits
		write(".app.yml.tmp-1", "another file's", time.Hour),          // another file
		write(".other.yaml.tmp-99", "not being rewritten", time.Hour), // a file not rewritten
		write("app.yaml.tmp-5", "no dot", time.Hour),                  // not our pattern
		write(".app.yaml.tmp-777", "newer than this run", -time.Hour),
	}
	if err := os.Mkdir(filepath.Join(dir, ".app.yaml.tmp-42"), 0o755); err != nil {
		t.Fatal(err)
	}
	keep = append(keep, filepath.Join(dir, ".app.yaml.tmp-42"))
	keep = append(keep, lockedStale(t, dir)...)

	if _, err := InPlace(context.Background(), []string{target}, Options{Map: relocate}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("%s is still there", filepath.Base(stale))
	}
	for _, p := range keep {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s was removed: %v", filepath.Base(p), err)
		}
	}
	to, _ := relocate("nginx:1.25")
	if b, _ := os.ReadFile(target); string(b) != "image: "+to+"\n" {
		t.Errorf("app.yaml = %q", b)
	}
}
