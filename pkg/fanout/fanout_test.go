package fanout

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestRunBounds runs large and small work together and checks that large
// work never exceeds Large at once, all work never exceeds All, small work
// leaves room for the large, and both classes reach their bounds (a run
// kept to one slot would pass the first checks).
func TestRunBounds(t *testing.T) {
	var items []int64
	for i := range 200 {
		if i%5 == 0 {
			items = append(items, 4<<20)
		} else {
			items = append(items, 100)
		}
	}
	var mu sync.Mutex
	var large, all, maxLarge, maxAll, maxSmall int
	ran := atomic.Int64{}
	l := Limits{Large: 3, All: 12}
	err := Run(context.Background(), items, func(n int64) int64 { return n }, l, func(ctx context.Context, n int64) error {
		mu.Lock()
		all++
		if n > Small {
			large++
		}
		maxAll, maxLarge, maxSmall = max(maxAll, all), max(maxLarge, large), max(maxSmall, all-large)
		mu.Unlock()
		time.Sleep(2 * time.Millisecond)
		mu.Lock()
		all--
		if n > Small {
			large--
		}
		mu.Unlock()
		ran.Add(1)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if ran.Load() != int64(len(items)) {
		t.Errorf("ran %d of %d items", ran.Load(), len(items))
	}
	if maxLarge != l.Large {
		t.Errorf("at most %d large at once, want exactly the bound %d", maxLarge, l.Large)
	}
	if maxAll > l.All {
		t.Errorf("%d at once, above the bound %d", maxAll, l.All)
	}
	if maxSmall != l.All-l.Large {
		t.Errorf("at most %d small at once beside large work, want %d", maxSmall, l.All-l.Large)
	}
}

// TestRunSmallOnly gives small work every slot when there is no large
// work, and treats every item as small without a size function.
func TestRunSmallOnly(t *testing.T) {
	var mu sync.Mutex
	var in, peak int
	release := make(chan struct{})
	var once sync.Once
	done := make(chan error)
	go func() {
		done <- Run(context.Background(), make([]int, 40), nil, For(2), func(ctx context.Context, _ int) error {
			mu.Lock()
			in++
			peak = max(peak, in)
			reached := in == 2*Wide
			mu.Unlock()
			if reached {
				once.Do(func() { close(release) })
			}
			<-release
			mu.Lock()
			in--
			mu.Unlock()
			return nil
		})
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("small work never reached %d at once (peak %d)", 2*Wide, peak)
	}
	if peak != 2*Wide {
		t.Errorf("peak %d at once, want %d", peak, 2*Wide)
	}
}

// TestRunStopsOnError returns the first error and starts nothing after it.
func TestRunStopsOnError(t *testing.T) {
	boom := errors.New("boom")
	var started atomic.Int64
	err := Run(context.Background(), make([]int, 1000), nil, Limits{Large: 1, All: 2}, func(ctx context.Context, _ int) error {
		if started.Add(1) == 3 {
			return boom
		}
		time.Sleep(time.Millisecond)
		return nil
	})
	if !errors.Is(err, boom) {
		t.Fatalf("got %v, want boom", err)
	}
	if n := started.Load(); n > 10 {
		t.Errorf("%d items started after the failure of the third", n)
	}
}

// TestRunCancelled returns the context's error when it ends, even though
// no item failed.
func TestRunCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var started atomic.Int64
	err := Run(ctx, make([]int, 1000), nil, Limits{Large: 1, All: 1}, func(ctx context.Context, _ int) error {
		if started.Add(1) == 5 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if n := started.Load(); n > 6 {
		t.Errorf("%d items started after the cancel at the fifth", n)
	}
}
