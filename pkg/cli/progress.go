package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/ferry-dev/ferry/pkg/progress"
	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progress returns how a command shows long work on stderr: a bar on a
// terminal, one plain line per image elsewhere, nothing with --quiet.
func (o *rootOptions) progress(stderr io.Writer) progress.Reporter {
	if o.quiet {
		return progress.Nop{}
	}
	if f, ok := stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		cols, _, _ := term.GetSize(int(f.Fd()))
		return &barReporter{w: stderr, cols: cols}
	}
	return &lineReporter{w: stderr}
}

// lineReporter prints one line per finished image, for logs and pipes.
type lineReporter struct {
	mu   sync.Mutex
	w    io.Writer
	done int
	n    int
}

func (l *lineReporter) Start(_ int64, images int) { l.mu.Lock(); l.n = images; l.mu.Unlock() }
func (l *lineReporter) Add(int64)                 {}
func (l *lineReporter) Finish()                   {}
func (l *lineReporter) ImageDone(ref, status string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.done++
	if l.n > 0 {
		fmt.Fprintf(l.w, "[%d/%d] %s: %s\n", l.done, l.n, ref, status)
		return
	}
	fmt.Fprintf(l.w, "%s: %s\n", ref, status)
}

// barReporter draws a byte bar with speed and ETA, naming the last image done.
type barReporter struct {
	mu   sync.Mutex
	w    io.Writer
	cols int // the terminal's width; 0 when unknown
	bar  *progressbar.ProgressBar
	n    int
	done int
}

func (b *barReporter) Start(total int64, images int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.n = images
	if total <= 0 {
		total = -1
	}
	opts := []progressbar.Option{
		progressbar.OptionSetWriter(b.w),
		progressbar.OptionShowBytes(true),
		progressbar.OptionUseIECUnits(true),
		progressbar.OptionShowCount(),
		progressbar.OptionSetWidth(20),
		progressbar.OptionThrottle(100 * time.Millisecond),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetDescription(fmt.Sprintf("0/%d images", images)),
	}
	if b.cols > 0 {
		opts = append(opts, progressbar.OptionFullWidth())
	}
	b.bar = progressbar.NewOptions64(total, opts...)
}

func (b *barReporter) Add(n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.bar != nil {
		_ = b.bar.Add64(n)
	}
}

func (b *barReporter) ImageDone(ref, status string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.done++
	if b.bar != nil {
		b.bar.Describe(b.describe(ref, status))
	}
}

// describe counts the images done and, where the line has room, names
// the last one. A line longer than the terminal wraps, and every redraw
// would then leave a line behind; the bar's figures need about 60 columns.
func (b *barReporter) describe(ref, status string) string {
	count := fmt.Sprintf("%d/%d images", b.done, b.n)
	room := 40
	if b.cols > 0 {
		room = b.cols - 60 - len(count)
	}
	name := shortRef(ref)
	last := fmt.Sprintf(", last %s (%s)", name, status)
	if len([]rune(last)) > room {
		// The image's own name, without registry and path, says most.
		last = fmt.Sprintf(", last %s (%s)", name[strings.LastIndexByte(name, '/')+1:], status)
	}
	if len([]rune(last)) > room {
		return count
	}
	return count + last
}

// shortRef drops a pinned reference's digest when a tag names the image,
// and shortens it otherwise: the bar has no room for 64 hex digits.
func shortRef(ref string) string {
	name, digest, ok := strings.Cut(ref, "@")
	if !ok {
		return ref
	}
	if strings.Contains(name[strings.LastIndexByte(name, '/')+1:], ":") {
		return name
	}
	algo, hex, _ := strings.Cut(digest, ":")
	return name + "@" + algo + ":" + hex[:min(12, len(hex))]
}

// Finish ends the bar's line where it stands: after a failure the bar
// stays at what was done (not filled), and what follows starts on a new
// line.
func (b *barReporter) Finish() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.bar == nil {
		return
	}
	_ = b.bar.Exit()
	fmt.Fprintln(b.w)
	b.bar = nil
}
