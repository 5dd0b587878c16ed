//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package bundle

import (
	"context"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ferry-dev/ferry/pkg/graph"
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

func TestASecondRunOnTheSameBundleIsRefused(t *testing.T) {
	w := newWorld(t)
	dir := t.TempDir()
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
