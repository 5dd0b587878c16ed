package access

import (
	"net/http"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
)

// PullKey names the transport that may pull from repo among the shared
// transports (SharedTransport).
func PullKey(repo name.Repository) string { return repo.Name() + " pull" }

// shared keeps the authenticated transports built during a run, one per
// key (a repository and the scope asked for), so that whatever reads a
// repository (resolving its tags, walking its manifests, fetching its
// blobs, looking for its signatures) shares one token instead of asking
// the token server again: on a slow link each token is a round trip.
type shared struct {
	mu sync.Mutex
	m  map[string]*sharedEntry
}

type sharedEntry struct {
	mu sync.Mutex
	t  http.RoundTripper
}

// SharedTransport returns the transport kept under key, building it with
// build the first time. Concurrent callers for one key wait for the one
// build; a failed build is not kept, and its error (as build wrapped it)
// goes to that caller only.
func (c *Client) SharedTransport(key string, build func() (http.RoundTripper, error)) (http.RoundTripper, error) {
	c.shared.mu.Lock()
	if c.shared.m == nil {
		c.shared.m = map[string]*sharedEntry{}
	}
	e := c.shared.m[key]
	if e == nil {
		e = &sharedEntry{}
		c.shared.m[key] = e
	}
	c.shared.mu.Unlock()

	e.mu.Lock()
	defer e.mu.Unlock()
	if e.t != nil {
		return e.t, nil
	}
	t, err := build()
	if err != nil {
		return nil, err
	}
	e.t = t
	return t, nil
}
