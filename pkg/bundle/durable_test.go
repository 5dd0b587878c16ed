package bundle

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
)

// diskLog records the partial file's syncs and the rename into place, in
// the order Write does them, through Options.hooks.
type diskLog struct {
	mu     sync.Mutex
	events []string
	// fail, when set, is returned by the sync with this 1-based number
	// instead of syncing.
	fail   error
	failAt int
	syncs  int
}

func (d *diskLog) hooks(every int64) hooks {
	return hooks{
		flushEvery: every,
		sync: func(f *os.File) error {
			d.mu.Lock()
			d.syncs++
			n := d.syncs
			d.events = append(d.events, "sync")
			d.mu.Unlock()
			if d.fail != nil && n == d.failAt {
				return d.fail
			}
			return f.Sync()
		},
		rename: func(oldpath, newpath string) error {
			d.mu.Lock()
			d.events = append(d.events, "rename")
			d.mu.Unlock()
			return os.Rename(oldpath, newpath)
		},
	}
}

// The promise: a bundle at its final path is on disk, not only in the
// page cache; the partial file is synced after its last byte and before
// it is renamed into place.
func TestWriteSyncsBeforeTheRename(t *testing.T) {
	w := newWorld(t)
	path := filepath.Join(t.TempDir(), "b.tar")
	var d diskLog
	// The default interval is far above this bundle's size: the only sync
	// is the final one.
	st, err := Write(t.Context(), path, w.fresh(), Options{Lock: w.lock, Jobs: 4, hooks: d.hooks(0)})
	if err != nil {
		t.Fatal(err)
	}
	if st.Size >= flushEvery {
		t.Fatalf("the fixture's bundle has %d bytes, over flushEvery: background syncs would blur the test", st.Size)
	}
	if want := []string{"sync", "rename"}; !slices.Equal(d.events, want) {
		t.Fatalf("disk operations %v, want %v", d.events, want)
	}
}

// The writer feeds the background flusher as blobs stream in, so the
// final sync has little left to wait for.
func TestWriteSyncsInTheBackground(t *testing.T) {
	w := newWorld(t)
	path := filepath.Join(t.TempDir(), "b.tar")
	var d diskLog
	if _, err := Write(t.Context(), path, w.fresh(), Options{Lock: w.lock, Jobs: 4, hooks: d.hooks(64 << 10)}); err != nil {
		t.Fatal(err)
	}
	if len(d.events) < 3 || d.events[len(d.events)-1] != "rename" {
		t.Fatalf("disk operations %v, want background syncs, the final sync, then the rename", d.events)
	}
}

// Linux reports a writeback error to one fsync only: a background sync
// that failed must fail Write even though the final sync succeeds, and
// nothing may appear at the final path.
func TestWriteFailsOnAFailedBackgroundSync(t *testing.T) {
	w := newWorld(t)
	path := filepath.Join(t.TempDir(), "b.tar")
	boom := errors.New("input/output error")
	d := diskLog{fail: boom, failAt: 1}
	_, err := Write(t.Context(), path, w.fresh(), Options{Lock: w.lock, Jobs: 4, hooks: d.hooks(64 << 10)})
	if !errors.Is(err, boom) {
		t.Fatalf("Write = %v, want the background sync's error", err)
	}
	// The failing sync is the first, so a background one: the writer feeds
	// the flusher long before the final sync (TestWriteSyncsInTheBackground).
	if slices.Contains(d.events, "rename") {
		t.Errorf("disk operations %v: renamed after a failed sync", d.events)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("after a failed sync, %s: %v, want nothing there", path, err)
	}
}
