// Package source serves the manifests and blobs of one registry repository
// as raw bytes, for walking and copying without re-encoding anything.
package source

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"

	"github.com/ferry-dev/ferry/pkg/access"
	"github.com/ferry-dev/ferry/pkg/graph"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Repo is a graph.Fetcher for one repository of a registry.
type Repo struct {
	client *access.Client
	repo   name.Repository

	once sync.Once
	http *http.Client
	err  error
}

var _ graph.Fetcher = (*Repo)(nil)

// New returns a fetcher for repo. Connections and tokens are set up on first
// use and reused for every blob.
func New(c *access.Client, repo name.Repository) *Repo {
	return &Repo{client: c, repo: c.Repository(repo)}
}

// Repository is the repository served.
func (r *Repo) Repository() name.Repository { return r.repo }

// Manifest fetches the manifest d names, as the bytes served.
func (r *Repo) Manifest(ctx context.Context, d v1.Descriptor) ([]byte, error) {
	desc, err := remote.Get(r.repo.Digest(d.Digest.String()), r.client.Remote(ctx)...)
	if err != nil {
		return nil, fmt.Errorf("fetching manifest %s from %s: %w", d.Digest, r.repo, err)
	}
	return desc.Manifest, nil
}

// Blob streams the blob d names. The caller verifies the bytes (graph.Verify):
// hashing once, where they are consumed, is cheaper than here and there.
func (r *Repo) Blob(ctx context.Context, d v1.Descriptor) (io.ReadCloser, error) {
	hc, err := r.httpClient(ctx)
	if err != nil {
		return nil, err
	}
	u := url.URL{Scheme: r.repo.Scheme(), Host: r.repo.RegistryStr(), Path: fmt.Sprintf("/v2/%s/blobs/%s", r.repo.RepositoryStr(), d.Digest)}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching blob %s from %s: %w", d.Digest, r.repo, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, fmt.Errorf("fetching blob %s from %s: %w", d.Digest, r.repo, transport.CheckError(resp, http.StatusOK))
	}
	return resp.Body, nil
}

func (r *Repo) httpClient(ctx context.Context) (*http.Client, error) {
	r.once.Do(func() {
		auth, err := r.client.Keychain().Resolve(r.repo.Registry)
		if err != nil {
			r.err = fmt.Errorf("credentials for %s: %w", r.repo.RegistryStr(), err)
			return
		}
		// The token is fetched with a background-free context of its own:
		// the transport outlives this call and serves every blob.
		t, err := transport.NewWithContext(ctx, r.repo.Registry, auth, transport.NewRetry(r.client.Transport()), []string{r.repo.Scope(transport.PullScope)})
		if err != nil {
			r.err = fmt.Errorf("connecting to %s: %w", r.repo.RegistryStr(), err)
			return
		}
		r.http = &http.Client{Transport: t}
	})
	return r.http, r.err
}
