package bundle

import (
	"sync"
	"sync/atomic"
)

// flushEvery is how many bytes are written between background syncs.
const flushEvery = 64 << 20

// flusher syncs the partial bundle in the background while it is being
// written, each time another flushEvery bytes have landed, so that the
// sync before the final rename has little left to wait for. Measured on a
// virtual disk with a write cache, that last sync cost a quarter of a pkg
// run when it was the only one: its price is the device's cache flush,
// which grows with everything written since the previous flush, and
// merely starting writeback early (sync_file_range) did not lower it.
type flusher struct {
	sync    func() error
	every   int64
	pending atomic.Int64
	kick    chan struct{}
	done    chan struct{}
	stopped sync.Once
	// err is the first failed sync. Linux reports a writeback error to
	// one fsync only, so a failure here must fail the bundle even when
	// the final sync succeeds.
	err error
}

func startFlusher(sync func() error) *flusher {
	fl := &flusher{sync: sync, every: flushEvery, kick: make(chan struct{}, 1), done: make(chan struct{})}
	go func() {
		defer close(fl.done)
		for range fl.kick {
			fl.pending.Store(0)
			if err := fl.sync(); err != nil && fl.err == nil {
				fl.err = err
			}
		}
	}()
	return fl
}

// wrote counts n bytes written and wakes the background sync when enough
// have piled up; it never waits for the sync.
func (fl *flusher) wrote(n int64) {
	if fl.pending.Add(n) < fl.every {
		return
	}
	select {
	case fl.kick <- struct{}{}:
	default: // a sync is already due; it will cover these bytes too
	}
}

// stop waits for a sync in progress and returns the first sync error.
func (fl *flusher) stop() error {
	fl.stopped.Do(func() { close(fl.kick) })
	<-fl.done
	return fl.err
}
