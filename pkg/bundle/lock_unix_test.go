//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package bundle

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/ferry-dev/ferry/pkg/graph"
	"github.com/ferry-dev/ferry/pkg/internal/prereq"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// gate holds every blob fetch until release is closed, telling started
// when the first one arrives (by then the run holds its partial file).
type gate struct {
	graph.Fetcher
	once    *sync.Once
	started chan struct{}
	release chan struct{}
}

func (g *gate) Blob(ctx context.Context, d v1.Descriptor) (io.ReadCloser, error) {
	g.once.Do(func() { close(g.started) })
	select {
	case <-g.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return g.Fetcher.Blob(ctx, d)
}

// lockableDir is a temporary directory on a file system with flock: on
// one without (some network file systems), ferry writes unguarded and
// there is nothing to test.
func lockableDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, "probe"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		prereq.Skip(t, fmt.Sprintf("no flock on %s: %v", dir, err))
	}
	return dir
}

func TestASecondRunOnTheSameBundleIsRefused(t *testing.T) {
	w := newWorld(t)
	dir := lockableDir(t)
	clean := filepath.Join(dir, "clean.tar")
	write(t, w, clean, w.fresh())

	path := filepath.Join(dir, "bundle.tar")
	started, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	held := wrap(w.fresh(), func(f graph.Fetcher) graph.Fetcher { return &gate{f, &once, started, release} })
	first := make(chan error, 1)
	go func() {
		_, err := Write(t.Context(), path, held, Options{Lock: w.lock, Jobs: 4})
		first <- err
	}()
	select {
	case <-started:
	case err := <-first:
		t.Fatalf("first run ended before fetching: %v", err)
	}

	_, err := Write(t.Context(), path, w.fresh(), Options{Lock: w.lock, Jobs: 4})
	if err == nil || !strings.Contains(err.Error(), "being written by another ferry run") || !strings.Contains(err.Error(), path) {
		t.Errorf("second run at once: %v; want it refused, naming %s", err, path)
	}

	close(release)
	if err := <-first; err != nil {
		t.Fatalf("first run after the second was refused: %v", err)
	}
	if fileHash(t, path) != fileHash(t, clean) {
		t.Error("the first run's bundle differs from a clean one: the refused run touched it")
	}
	if st := write(t, w, path, w.fresh()); !st.Unchanged {
		t.Errorf("a run after the first finished: %+v; want the bundle recognised as complete", st)
	}
}

func TestOpenNoticesTheFileWasMoved(t *testing.T) {
	w := newWorld(t)
	for name, move := range map[string]func(t *testing.T, partial string){
		// Another run renamed it into place between our open and lock...
		"renamed away": func(t *testing.T, partial string) {
			if err := os.Rename(partial, partial+".moved"); err != nil {
				t.Fatal(err)
			}
		},
		// ...and yet another run created a new partial file since.
		"replaced": func(t *testing.T, partial string) {
			if err := os.Rename(partial, partial+".moved"); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(partial, nil, 0o644); err != nil {
				t.Fatal(err)
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(lockableDir(t), "bundle.tar")
			o := Options{Lock: w.lock, Jobs: 4, hooks: hooks{opened: func() { move(t, PartialPath(path)) }}}
			_, err := Write(t.Context(), path, w.fresh(), o)
			if err == nil || !strings.Contains(err.Error(), "being written by another ferry run") {
				t.Errorf("Write after its partial file was %s under it: %v; want it refused", name, err)
			}
			if _, err := os.Stat(path); err == nil {
				t.Error("a bundle appeared at the final path")
			}
		})
	}
}

// TestTheLockIsHeldUntilTheBundleIsInPlace runs a second Write to
// completion in the moment the first has its bundle at the final path but
// has not yet let go of the file: the second must find the bundle done,
// not lock the first's file and start it over.
func TestTheLockIsHeldUntilTheBundleIsInPlace(t *testing.T) {
	w := newWorld(t)
	dir := lockableDir(t)
	clean := filepath.Join(dir, "clean.tar")
	write(t, w, clean, w.fresh())

	path := filepath.Join(dir, "bundle.tar")
	var second Stats
	var secondErr error
	o := Options{Lock: w.lock, Jobs: 4, hooks: hooks{committing: func() {
		second, secondErr = Write(t.Context(), path, w.fresh(), Options{Lock: w.lock, Jobs: 4})
	}}}
	if _, err := Write(t.Context(), path, w.fresh(), o); err != nil {
		t.Fatalf("first run: %v", err)
	}
	if secondErr != nil || !second.Unchanged || second.Fetched != 0 {
		t.Errorf("second run while the first was committing: %+v, %v; want the bundle found complete, nothing fetched", second, secondErr)
	}
	if fileHash(t, path) != fileHash(t, clean) {
		t.Error("the bundle differs from a clean one")
	}
	for _, p := range []string{PartialPath(path), JournalPath(path)} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s left behind", p)
		}
	}
}

// TestARunFinishedMeanwhileIsRecognised has another run write the whole
// bundle after this one found nothing at the path but before it opened
// its partial file: with the lock in hand it must see the bundle is done
// rather than fetch it all again.
func TestARunFinishedMeanwhileIsRecognised(t *testing.T) {
	w := newWorld(t)
	path := filepath.Join(t.TempDir(), "bundle.tar")
	o := Options{Lock: w.lock, Jobs: 4, hooks: hooks{checked: func() { write(t, w, path, w.fresh()) }}}
	st, err := Write(t.Context(), path, w.fresh(), o)
	if err != nil || !st.Unchanged || st.Fetched != 0 {
		t.Errorf("a run whose bundle another finished meanwhile: %+v, %v; want it found complete, nothing fetched", st, err)
	}
	for _, p := range []string{PartialPath(path), JournalPath(path)} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s left behind", p)
		}
	}
}
