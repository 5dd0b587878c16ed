package bundle

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

func TestFlusherSyncsInTheBackground(t *testing.T) {
	var calls atomic.Int32
	fl := startFlusher(func() error { calls.Add(1); return nil })
	fl.wrote(flushEvery - 1)
	if err := fl.stop(); err != nil {
		t.Fatal(err)
	}
	if n := calls.Load(); n != 0 {
		t.Fatalf("synced %d times below the threshold, want 0", n)
	}

	fl = startFlusher(func() error { calls.Add(1); return nil })
	fl.wrote(flushEvery / 2)
	fl.wrote(flushEvery / 2)
	deadline := time.Now().Add(10 * time.Second)
	for calls.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if err := fl.stop(); err != nil {
		t.Fatal(err)
	}
	if calls.Load() == 0 {
		t.Fatal("no background sync after flushEvery bytes")
	}
	if err := fl.stop(); err != nil { // twice, as close after commit does
		t.Fatal(err)
	}
}

// Linux reports a writeback error to one fsync only: a background sync
// that failed must fail the bundle even if the final sync succeeds.
func TestFlusherKeepsTheFirstSyncError(t *testing.T) {
	boom := errors.New("EIO")
	var calls atomic.Int32
	fl := startFlusher(func() error {
		if calls.Add(1) == 1 {
			return boom
		}
		return nil
	})
	for range 3 {
		fl.wrote(flushEvery)
		time.Sleep(5 * time.Millisecond)
	}
	if err := fl.stop(); !errors.Is(err, boom) {
		t.Fatalf("stop() = %v, want the first sync's error", err)
	}
}
