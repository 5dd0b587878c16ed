package bundle

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/ferry-dev/ferry/pkg/fanout"
	"github.com/ferry-dev/ferry/pkg/graph"
	"github.com/ferry-dev/ferry/pkg/lock"
	"github.com/ferry-dev/ferry/pkg/progress"
)

// Entry is one image to put into a bundle.
type Entry struct {
	// Name is the reference as written; it becomes the entry's
	// org.opencontainers.image.ref.name.
	Name string
	// Root is the image or index, already walked.
	Root *graph.Node
	// Fetcher serves Root's blobs, and the artifacts'.
	Fetcher graph.Fetcher
	// Artifacts are the signatures, attestations, SBOMs and referrers
	// attached to Root, its children or each other, carried along as
	// index.json entries of their own (see AnnotationSubject).
	Artifacts []Artifact
}

// Options tune Write.
type Options struct {
	// Lock is stored in the bundle as ferry.lock.yaml, with the paths of
	// its sources made relative to the working directory and cleaned (see
	// encodeLock); nil stores none.
	Lock *lock.File
	// Jobs bounds how many blobs are fetched at once; 0 means 8.
	Jobs int
	// Progress receives bytes written and images finished.
	Progress progress.Reporter
	// SplitSize, when above zero, cuts the bundle into parts of at most
	// that many bytes (see PartPath and PartsPath) instead of one file; at
	// least MinSplitSize.
	SplitSize int64
	// Have, when set, makes a delta bundle: the blobs it lists are left
	// out, and DeltaFile says which, and which images need them.
	Have *Have

	hooks hooks
}

// hooks let tests act inside the windows that two runs on one path race
// for.
type hooks struct {
	// checked runs after the first look at path, before the partial
	// file is opened.
	checked func()
	// opened runs between opening the partial file and locking it.
	opened func()
	// committing runs between the rename into place and the close, in
	// whichever order the platform does them.
	committing func()
	// sync and rename, when set, stand in for the partial file's fsync
	// (background and final) and for its rename into place, so that a
	// test sees their order and can make a sync fail.
	sync   func(f *os.File) error
	rename func(oldpath, newpath string) error
	// flushEvery, when set, replaces flushEvery, so that a small test
	// bundle is synced in the background too.
	flushEvery int64
	// cut runs once part n of a split bundle is in place, before the
	// bundle is shortened past it: when the disk holds the most.
	cut func(n int)
}

func (h hooks) run(f func()) {
	if f != nil {
		f()
	}
}

// Stats say what Write did.
type Stats struct {
	// Images is the number of index.json entries.
	Images int
	// Files is the number of manifests and blobs stored, each once.
	Files int
	// Size is the length of the bundle in bytes.
	Size int64
	// Fetched and FetchedBytes count blobs fetched in this run.
	Fetched      int
	FetchedBytes int64
	// Resumed and ResumedBytes count blobs an interrupted run had already
	// written, checked again and kept.
	Resumed      int
	ResumedBytes int64
	// Unchanged reports that path already held this very bundle, so
	// nothing was fetched or written.
	Unchanged bool
}

// errBusy is lockPartial's answer when another run holds the partial file.
var errBusy = errors.New("locked by another process")

// copyBuffer is the buffer each concurrent blob copy streams through.
const copyBuffer = 1 << 20

// smallCopyBuffer is the buffer of a blob of at most fanout.Small.
const smallCopyBuffer = 64 << 10

// PartialPath is where Write builds the bundle for path until it is
// complete: a hidden file beside it. JournalPath lists the blobs already
// written there, so that a rerun resumes.
func PartialPath(path string) string {
	dir, base := filepath.Split(path)
	return filepath.Join(dir, "."+base+".partial")
}

// JournalPath is the journal beside PartialPath.
func JournalPath(path string) string { return PartialPath(path) + ".journal" }

// Write builds the bundle at path from entries: every manifest as served
// and every blob, each digest once, each blob checked against its digest
// as it streams. Nothing appears at path until the bundle is complete.
// An interrupted or failed run leaves PartialPath and JournalPath behind;
// running Write again with the same inputs fetches only what is missing.
//
// With o.SplitSize the bundle is built the same way at a hidden path
// beside path (see SplitWorkFiles) and then cut into parts; nothing
// appears at the parts' names until every part is complete, and the parts
// file comes last.
func Write(ctx context.Context, path string, entries []Entry, o Options) (Stats, error) {
	if o.SplitSize > 0 {
		return writeSplit(ctx, path, entries, o)
	}
	var lockYAML []byte
	if o.Lock != nil {
		var err error
		if lockYAML, err = encodeLock(o.Lock); err != nil {
			return Stats{}, err
		}
	}
	p, err := newPlan(entries, lockYAML, o.Have)
	if err != nil {
		return Stats{}, err
	}
	jobs := o.Jobs
	if jobs <= 0 {
		jobs = 8
	}
	w := &writer{plan: p, prog: progress.OrNop(o.Progress), hooks: o.hooks}
	w.stats = Stats{Images: len(entries), Files: countFiles(p), Size: p.size}
	unchanged := func() (Stats, error) {
		w.stats.Unchanged = true
		for _, e := range entries {
			w.prog.ImageDone(e.Name, "already bundled")
		}
		return w.stats, nil
	}
	if same, err := p.matches(path); err != nil {
		return Stats{}, err
	} else if same {
		return unchanged()
	}
	w.hooks.run(w.hooks.checked)
	defer w.close() // also after a failed open: the file, the flusher
	if finished, err := w.open(path); err != nil {
		return Stats{}, err
	} else if finished {
		return unchanged()
	}

	w.prog.Start(p.inlineBytes+p.fetchBytes, len(entries))
	defer w.prog.Finish()
	for _, it := range p.items {
		if _, err := w.f.WriteAt(it.hdr, it.off); err != nil {
			return w.stats, fmt.Errorf("writing %s: %w", w.partial, err)
		}
		if it.inline != nil {
			if _, err := w.f.WriteAt(it.inline, it.dataOff); err != nil {
				return w.stats, fmt.Errorf("writing %s: %w", w.partial, err)
			}
		}
	}
	w.prog.Add(p.inlineBytes)
	for _, e := range entries {
		if _, ok := p.left[e.Name]; !ok {
			w.prog.ImageDone(e.Name, "bundled")
		}
	}

	// A large blob streams through a large buffer, a few at a time; small
	// ones (configs, small layers: round trips rather than bytes across a
	// slow link) run many at once through small buffers, so memory stays
	// flat either way.
	large := sync.Pool{New: func() any { b := make([]byte, copyBuffer); return &b }}
	small := sync.Pool{New: func() any { b := make([]byte, smallCopyBuffer); return &b }}
	// Largest first, so that the run does not end waiting on one big layer
	// that started last while the other workers sit idle.
	fetch := slices.Clone(p.fetch)
	slices.SortStableFunc(fetch, func(a, b *item) int { return cmp.Compare(b.size, a.size) })
	size := func(it *item) int64 { return it.size }
	err = fanout.Run(ctx, fetch, size, fanout.For(jobs), func(ctx context.Context, it *item) error {
		bufs := &small
		if it.size > fanout.Small {
			bufs = &large
		}
		buf := bufs.Get().(*[]byte)
		defer bufs.Put(buf)
		return w.blob(ctx, it, *buf)
	})
	if err != nil {
		return w.stats, err
	}
	if err := ctx.Err(); err != nil {
		return w.stats, err
	}
	return w.stats, w.commit(path)
}

func countFiles(p *plan) int {
	n := 0
	for _, it := range p.items {
		if strings.HasPrefix(it.name, blobDir) && !it.dir {
			n++
		}
	}
	return n
}

// writer is one run of Write.
type writer struct {
	plan    *plan
	prog    progress.Reporter
	hooks   hooks
	partial string
	f       *os.File
	flush   *flusher
	journal *journal
	// done are the digests a previous run journaled for this plan.
	done map[string]bool

	mu    sync.Mutex
	stats Stats
}

// open prepares the partial file: kept when the journal belongs to the
// same plan and the file has the plan's size, started over otherwise.
// finished reports that another run completed this very bundle at path
// while this one was getting ready.
func (w *writer) open(path string) (finished bool, err error) {
	w.partial = PartialPath(path)
	f, err := os.OpenFile(w.partial, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return false, fmt.Errorf("creating %s: %w", w.partial, err)
	}
	w.f = f
	w.hooks.run(w.hooks.opened)
	busy := func() error {
		return fmt.Errorf("%s is being written by another ferry run (%s is locked): wait for it to finish, or write to another path", path, w.partial)
	}
	if err := lockPartial(f); errors.Is(err, errBusy) {
		return false, busy()
	} else if err != nil {
		return false, fmt.Errorf("locking %s: %w", w.partial, err)
	}
	st, err := f.Stat()
	if err != nil {
		return false, fmt.Errorf("creating %s: %w", w.partial, err)
	}
	// Between our open and our lock another run may have finished and
	// renamed this very file into place: it is no longer the partial.
	now, err := os.Stat(w.partial)
	switch {
	case errors.Is(err, fs.ErrNotExist), err == nil && !os.SameFile(st, now):
		return false, busy()
	case err != nil:
		return false, fmt.Errorf("creating %s: %w", w.partial, err)
	}
	// The run that held the lock before us may have just put this very
	// bundle at path; then the empty file we created goes, still locked.
	if same, err := w.plan.matches(path); err != nil {
		return false, err
	} else if same {
		if st.Size() == 0 {
			os.Remove(w.partial)
		}
		return true, nil
	}
	// Only the run holding the lock may trust or rewrite the journal.
	jpath := JournalPath(path)
	done := readJournal(jpath, w.plan.hash)
	if done == nil || st.Size() != w.plan.size {
		done = nil
		// Zero everything: padding and the end of the archive must be
		// zeros, and stale bytes must not pass for a blob.
		if err := f.Truncate(0); err != nil {
			return false, fmt.Errorf("creating %s: %w", w.partial, err)
		}
	}
	if err := f.Truncate(w.plan.size); err != nil {
		return false, fmt.Errorf("creating %s (%d bytes): %w", w.partial, w.plan.size, err)
	}
	w.done = done
	w.flush = startFlusher(func() error { return w.sync() })
	if w.hooks.flushEvery > 0 {
		w.flush.every = w.hooks.flushEvery
	}
	// The journal is written afresh, dropping torn lines.
	w.journal, err = createJournal(jpath, w.plan.hash, done)
	return false, err
}

func (w *writer) close() {
	if w.flush != nil {
		_ = w.flush.stop()
	}
	if w.journal != nil {
		w.journal.close()
	}
	if w.f != nil {
		w.f.Close()
	}
}

// commit makes the bundle durable and moves it to its final path.
func (w *writer) commit(path string) error {
	if err := w.flush.stop(); err != nil {
		return fmt.Errorf("writing %s: %w", w.partial, err)
	}
	if err := w.sync(); err != nil {
		return fmt.Errorf("writing %s: %w", w.partial, err)
	}
	// The journal goes while the lock is held: once the file has moved,
	// a new run may start a journal of its own at the same path.
	w.journal.close()
	os.Remove(w.journal.path)
	w.journal = nil
	// Where it can, the file moves while still open and locked: closed
	// first, a waiting run could lock and truncate it before the rename.
	rename := func() error {
		mv := os.Rename
		if w.hooks.rename != nil {
			mv = w.hooks.rename
		}
		if err := mv(w.partial, path); err != nil {
			return fmt.Errorf("writing %s: %w", path, err)
		}
		return nil
	}
	release := func() error {
		f := w.f
		w.f = nil
		if err := f.Close(); err != nil {
			return fmt.Errorf("writing %s: %w", w.partial, err)
		}
		return nil
	}
	first, second := rename, release
	if !renameOpen {
		first, second = release, rename
	}
	if err := first(); err != nil {
		return err
	}
	w.hooks.run(w.hooks.committing)
	if err := second(); err != nil {
		return err
	}
	syncDir(filepath.Dir(path))
	return nil
}

// sync flushes the partial file to disk.
func (w *writer) sync() error {
	if w.hooks.sync != nil {
		return w.hooks.sync(w.f)
	}
	return w.f.Sync()
}

// blob fills one blob's region: kept from the previous run when journaled
// and still hashing right, else fetched.
func (w *writer) blob(ctx context.Context, it *item, buf []byte) error {
	if w.done[it.desc.Digest.String()] {
		if err := w.check(it, buf); err == nil {
			w.mu.Lock()
			w.stats.Resumed++
			w.stats.ResumedBytes += it.size
			w.mu.Unlock()
			w.prog.Add(it.size)
			w.finished(it)
			return nil
		}
	}
	var err error
	for _, f := range it.fetchers {
		if err = w.fetch(ctx, f, it, buf); err == nil || ctx.Err() != nil || errors.Is(err, graph.ErrDigestMismatch) {
			break
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("blob %s of %s: %w", it.desc.Digest, strings.Join(it.users, ", "), err)
	}
	if err := w.journal.add(it.desc.Digest.String()); err != nil {
		return err
	}
	w.mu.Lock()
	w.stats.Fetched++
	w.stats.FetchedBytes += it.size
	w.mu.Unlock()
	w.finished(it)
	return nil
}

// fetch streams one blob from f to its region, hashing as it goes.
func (w *writer) fetch(ctx context.Context, f graph.Fetcher, it *item, buf []byte) error {
	rc, err := f.Blob(ctx, it.desc)
	if err != nil {
		return err
	}
	defer rc.Close()
	dst := &regionWriter{w: io.NewOffsetWriter(w.f, it.dataOff), left: it.size, prog: w.prog, flush: w.flush}
	n, err := io.CopyBuffer(dst, graph.Verify(rc, it.desc), buf)
	if err != nil {
		return err
	}
	if n != it.size {
		return fmt.Errorf("%w: got %d bytes, want %d", graph.ErrDigestMismatch, n, it.size)
	}
	return nil
}

// check re-hashes a region a previous run wrote: cheap next to fetching it
// again, and it makes the journal safe without syncing every blob.
func (w *writer) check(it *item, buf []byte) error {
	r := graph.Verify(io.NopCloser(io.NewSectionReader(w.f, it.dataOff, it.size)), it.desc)
	_, err := io.CopyBuffer(io.Discard, r, buf)
	return err
}

// finished counts a blob written for each image that uses it.
func (w *writer) finished(it *item) {
	w.mu.Lock()
	var done []string
	for _, u := range it.users {
		w.plan.left[u]--
		if w.plan.left[u] == 0 {
			done = append(done, u)
		}
	}
	w.mu.Unlock()
	for _, u := range done {
		w.prog.ImageDone(u, "bundled")
	}
}

// regionWriter refuses to write past a blob's region, so that a source
// sending too much can never overwrite the next header.
type regionWriter struct {
	w     io.Writer
	left  int64
	prog  progress.Reporter
	flush *flusher
}

func (r *regionWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > r.left {
		return 0, fmt.Errorf("%w: longer than its descriptor's size", graph.ErrDigestMismatch)
	}
	n, err := r.w.Write(p)
	r.left -= int64(n)
	r.prog.Add(int64(n))
	r.flush.wrote(int64(n))
	return n, err
}

// syncDir makes a rename durable where the platform allows it.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}
