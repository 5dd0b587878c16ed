// Package fanout runs many pieces of registry work at once under two
// bounds. Across a slow link a small request costs a round trip, not
// bandwidth, so many of them should be in flight; a large blob costs
// bandwidth and a buffer, so only a few should. One limit for both is
// either slow on a WAN or heavy on memory and disk: fanout keeps them
// apart.
package fanout

import (
	"context"

	"golang.org/x/sync/errgroup"
)

// Small is the size up to which work counts as small: below it a round
// trip (20-100 ms across a WAN) costs more than the bytes (1 MiB is 80 ms
// at 100 Mbit/s).
const Small = 1 << 20

// Limits bound a run.
type Limits struct {
	// Large is how many pieces of work above Small run at once (the
	// user's --concurrency).
	Large int
	// All is how many run at once in all, large ones included.
	All int
}

// For returns the limits that follow from jobs large transfers at once:
// Wide × jobs in all.
func For(jobs int) Limits {
	jobs = max(jobs, 1)
	return Limits{Large: jobs, All: Wide * jobs}
}

// Wide is how many small requests run per large transfer: enough to keep a
// link with 25 ms round trips busy at the default of 8 large transfers.
const Wide = 4

// Run calls f for every item, large ones (size above Small) at most
// l.Large at a time and all at most l.All at a time, each class in the
// order given, and returns the first error, which cancels the context the
// others were given; items not started by then are not started. size may
// be nil: every item is small.
func Run[T any](ctx context.Context, items []T, size func(T) int64, l Limits, f func(context.Context, T) error) error {
	l.Large, l.All = max(l.Large, 1), max(l.All, l.Large, 1)
	var large, small []T
	for _, it := range items {
		if size != nil && size(it) > Small {
			large = append(large, it)
		} else {
			small = append(small, it)
		}
	}
	all := make(chan struct{}, l.All)
	// Small work may not take the slots large work needs to keep going:
	// at most All-Large of them, unless there is no large work at all.
	smallLimit := l.All - l.Large
	if len(large) == 0 || smallLimit < 1 {
		smallLimit = l.All
	}
	g, gctx := errgroup.WithContext(ctx)
	dispatch := func(list []T, limit int) {
		if len(list) == 0 {
			return
		}
		sem := make(chan struct{}, limit)
		g.Go(func() error {
			for _, it := range list {
				select {
				case sem <- struct{}{}:
				case <-gctx.Done():
					return nil
				}
				select {
				case all <- struct{}{}:
				case <-gctx.Done():
					return nil
				}
				g.Go(func() error {
					defer func() { <-all; <-sem }()
					if err := gctx.Err(); err != nil {
						return err
					}
					return f(gctx, it)
				})
			}
			return nil
		})
	}
	dispatch(large, l.Large)
	dispatch(small, smallLimit)
	if err := g.Wait(); err != nil {
		return err
	}
	// A cancelled ctx stops the dispatch without an error of f's.
	return ctx.Err()
}
