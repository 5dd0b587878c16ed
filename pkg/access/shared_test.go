package access

import (
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
)

func TestSharedTransportBuiltOncePerKey(t *testing.T) {
	c, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	var builds atomic.Int32
	build := func() (http.RoundTripper, error) {
		builds.Add(1)
		return http.DefaultTransport, nil
	}
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.SharedTransport("r pull", build); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if n := builds.Load(); n != 1 {
		t.Errorf("16 callers of one key built %d transports, want 1", n)
	}
	if _, err := c.SharedTransport("other pull", build); err != nil || builds.Load() != 2 {
		t.Errorf("another key: err %v, %d builds; want its own build", err, builds.Load())
	}

	// A failure is the caller's and is not kept: the next caller builds.
	boom := errors.New("registry down")
	if _, err := c.SharedTransport("down pull", func() (http.RoundTripper, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Fatalf("err = %v, want the build's error", err)
	}
	got, err := c.SharedTransport("down pull", build)
	if err != nil || got == nil {
		t.Errorf("after a failed build: %v, %v; want a new build", got, err)
	}
}
