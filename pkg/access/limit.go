package access

import (
	"context"
	"sync"
)

// increaseAfter is how many answers other than 429 in a row raise a host's
// limit by one again.
const increaseAfter = 10

// limiter keeps one adaptive in-flight limit per host, shared by every
// goroutine of a run: a registry that answers 429 sees the whole run slow
// down, not just the request it refused (additive increase, multiplicative
// decrease, as TCP does).
type limiter struct {
	ceiling int

	mu    sync.Mutex
	hosts map[string]*hostLimit
}

func newLimiter(ceiling int) *limiter {
	return &limiter{ceiling: max(ceiling, 1), hosts: map[string]*hostLimit{}}
}

func (l *limiter) host(h string) *hostLimit {
	l.mu.Lock()
	defer l.mu.Unlock()
	hl := l.hosts[h]
	if hl == nil {
		hl = &hostLimit{limit: l.ceiling, ceiling: l.ceiling}
		l.hosts[h] = hl
	}
	return hl
}

// hostLimit is a semaphore whose size moves between 1 and ceiling.
type hostLimit struct {
	mu       sync.Mutex
	limit    int
	ceiling  int
	inFlight int
	// epoch counts decreases. A 429 to a request sent before the last
	// decrease says nothing new: the burst it belonged to was already
	// answered, so a burst of 429s halves the limit once, not to 1.
	epoch     int
	successes int
	waiting   []chan struct{}
	maxSeen   int // highest inFlight, for tests
}

// acquire waits for a slot and returns the function that gives it back,
// told whether the answer was a 429.
func (h *hostLimit) acquire(ctx context.Context) (func(tooMany bool), error) {
	h.mu.Lock()
	if h.inFlight < h.limit && len(h.waiting) == 0 {
		h.inFlight++
		h.maxSeen = max(h.maxSeen, h.inFlight)
		return h.releaser(), nil
	}
	ch := make(chan struct{})
	h.waiting = append(h.waiting, ch)
	h.mu.Unlock()
	select {
	case <-ch:
		h.mu.Lock()
		return h.releaser(), nil
	case <-ctx.Done():
		h.mu.Lock()
		defer h.mu.Unlock()
		for i, w := range h.waiting {
			if w == ch {
				h.waiting = append(h.waiting[:i], h.waiting[i+1:]...)
				return nil, ctx.Err()
			}
		}
		// The slot was handed over as ctx ended: pass it on.
		h.inFlight--
		h.wake()
		return nil, ctx.Err()
	}
}

// releaser returns the function that frees a slot taken now; h.mu is held
// and released.
func (h *hostLimit) releaser() func(bool) {
	epoch := h.epoch
	h.mu.Unlock()
	var once sync.Once
	return func(tooMany bool) {
		once.Do(func() { h.release(epoch, tooMany) })
	}
}

func (h *hostLimit) release(epoch int, tooMany bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.inFlight--
	switch {
	case tooMany && epoch == h.epoch:
		h.limit = max(h.limit/2, 1)
		h.epoch++
		h.successes = 0
	case tooMany:
	default:
		h.successes++
		if h.successes >= increaseAfter && h.limit < h.ceiling {
			h.limit++
			h.successes = 0
		}
	}
	h.wake()
}

// wake hands free slots to waiters in order; h.mu is held. The slot is
// taken here on the waiter's behalf, so no newcomer can slip in between.
func (h *hostLimit) wake() {
	for h.inFlight < h.limit && len(h.waiting) > 0 {
		h.inFlight++
		h.maxSeen = max(h.maxSeen, h.inFlight)
		close(h.waiting[0])
		h.waiting = h.waiting[1:]
	}
}

// Limit is the current in-flight limit towards host, for tests and logs.
func (h *hostLimit) Limit() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.limit
}
