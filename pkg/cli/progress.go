package cli

import (
	"fmt"
	"io"
	"os"
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
		return &barReporter{w: stderr}
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
	b.bar = progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(b.w),
		progressbar.OptionShowBytes(true),
		progressbar.OptionShowCount(),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionFullWidth(),
		progressbar.OptionSetDescription(fmt.Sprintf("0/%d images", images)),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(b.w) }),
	)
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
		b.bar.Describe(fmt.Sprintf("%d/%d images, last %s (%s)", b.done, b.n, ref, status))
	}
}

func (b *barReporter) Finish() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.bar != nil {
		_ = b.bar.Finish()
	}
}
