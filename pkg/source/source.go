// Package source serves the manifests and blobs of one registry repository
// as raw bytes, for walking and copying without re-encoding anything.
package source

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ferry-dev/ferry/pkg/access"
	"github.com/ferry-dev/ferry/pkg/graph"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Repo is a graph.Fetcher for one repository of a registry.
type Repo struct {
	client *access.Client
	repo   name.Repository

	mu   sync.Mutex
	http *http.Client
	// kept are manifests already fetched (by resolving), served once
	// without a request.
	kept map[v1.Hash][]byte

	stall time.Duration // stallTimeout, unless a test sets it
}

var _ graph.Fetcher = (*Repo)(nil)

// New returns a fetcher for repo. Connections and tokens are set up on first
// use and reused for every blob.
func New(c *access.Client, repo name.Repository) *Repo {
	return &Repo{client: c, repo: c.Repository(repo)}
}

// Repository is the repository served.
func (r *Repo) Repository() name.Repository { return r.repo }

// Keep hands the repository a manifest already fetched from it (by
// resolving), so that the first Manifest call for d makes no request.
func (r *Repo) Keep(d v1.Hash, raw []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.kept == nil {
		r.kept = map[v1.Hash][]byte{}
	}
	r.kept[d] = raw
}

// Manifest fetches the manifest d names, as the bytes served, over the
// repository's one authenticated connection (not a new ping and token per
// manifest). The caller checks the bytes against d.
func (r *Repo) Manifest(ctx context.Context, d v1.Descriptor) ([]byte, error) {
	r.mu.Lock()
	raw, ok := r.kept[d.Digest]
	delete(r.kept, d.Digest)
	r.mu.Unlock()
	if ok {
		return raw, nil
	}
	hc, err := r.httpClient(ctx)
	if err != nil {
		return nil, err
	}
	u := url.URL{Scheme: r.repo.Scheme(), Host: r.repo.RegistryStr(), Path: fmt.Sprintf("/v2/%s/manifests/%s", r.repo.RepositoryStr(), d.Digest)}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", graph.ManifestAccept)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching manifest %s from %s: %w", d.Digest, r.repo, access.Explain(access.RedactURL(err)))
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil, fmt.Errorf("%s has no manifest %s (HTTP 404): it was deleted, or never copied there (a mirror of some platforms of an index lacks the others); check the source, or resolve again with ferry resolve",
			r.repo, d.Digest)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching manifest %s from %s: %w", d.Digest, r.repo, access.Explain(transport.CheckError(resp, http.StatusOK)))
	}
	// A registry's word on size is bounded like the manifest itself.
	b, err := io.ReadAll(io.LimitReader(resp.Body, graph.MaxManifestSize+1))
	if err != nil {
		return nil, fmt.Errorf("fetching manifest %s from %s: %w", d.Digest, r.repo, access.RedactURL(err))
	}
	if len(b) > graph.MaxManifestSize {
		return nil, fmt.Errorf("fetching manifest %s from %s: %w: more than %d bytes", d.Digest, r.repo, graph.ErrTooLarge, graph.MaxManifestSize)
	}
	return b, nil
}

// stallTimeout is how long a blob download may receive nothing before it
// is resumed on a new connection.
const stallTimeout = 60 * time.Second

// maxResumes bounds how many times in a row a blob download is resumed
// without a byte of progress in between.
const maxResumes = 5

// Blob streams the blob d names. When the connection breaks partway, the
// download resumes where it stopped (Range: bytes=N-) instead of starting
// over. The caller verifies the bytes (graph.Verify): hashing once, where
// they are consumed, is cheaper than here and there.
func (r *Repo) Blob(ctx context.Context, d v1.Descriptor) (io.ReadCloser, error) {
	hc, err := r.httpClient(ctx)
	if err != nil {
		return nil, err
	}
	b := &blobReader{ctx: ctx, hc: hc, repo: r.repo, d: d, stall: cmp.Or(r.stall, stallTimeout)}
	body, err := b.get(0)
	if err != nil {
		return nil, err
	}
	b.body = body
	return b, nil
}

// blobReader reads one blob and resumes it after a broken connection.
type blobReader struct {
	ctx  context.Context
	hc   *http.Client
	repo name.Repository
	d    v1.Descriptor

	body    io.ReadCloser
	off     int64 // bytes delivered so far
	resumes int   // resumes since the last byte of progress
	total   int   // resumes in all, for the error

	// stall is how long a body may send nothing before the download is
	// cut and resumed; the transport's timeouts end at the headers.
	stall   time.Duration
	watch   *time.Timer
	cancel  context.CancelFunc
	stalled atomic.Bool
}

func (b *blobReader) url() string {
	u := url.URL{Scheme: b.repo.Scheme(), Host: b.repo.RegistryStr(), Path: fmt.Sprintf("/v2/%s/blobs/%s", b.repo.RepositoryStr(), b.d.Digest)}
	return u.String()
}

// get asks for the blob from byte off on. A registry that ignores Range
// answers 200 with the whole blob; the bytes already delivered are skipped.
func (b *blobReader) get(off int64) (io.ReadCloser, error) {
	ctx, cancel := context.WithCancel(b.ctx)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.url(), nil)
	if err != nil {
		cancel()
		return nil, err
	}
	if off > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", off))
	}
	resp, err := b.hc.Do(req)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("fetching blob %s from %s: %w", b.d.Digest, b.repo, access.RedactURL(err))
	}
	body, err := b.accept(resp, off)
	if err != nil {
		cancel()
		return nil, err
	}
	// Watched from the headers on: waiting for them is the transport's
	// business (ResponseHeaderTimeout, with retries).
	b.stopWatch()
	b.cancel = cancel
	b.watch = time.AfterFunc(b.stall, func() {
		b.stalled.Store(true)
		cancel()
	})
	return body, nil
}

// accept checks the answer to a GET from byte off on.
func (b *blobReader) accept(resp *http.Response, off int64) (io.ReadCloser, error) {
	switch {
	case resp.StatusCode == http.StatusOK:
		if off > 0 {
			if _, err := io.CopyN(io.Discard, resp.Body, off); err != nil {
				resp.Body.Close()
				return nil, fmt.Errorf("fetching blob %s from %s: skipping the %d bytes already read: %w", b.d.Digest, b.repo, off, err)
			}
		}
		return resp.Body, nil
	case resp.StatusCode == http.StatusPartialContent && off > 0:
		if start, ok := rangeStart(resp.Header.Get("Content-Range")); !ok || start != off {
			resp.Body.Close()
			return nil, fmt.Errorf("fetching blob %s from %s: asked for bytes from %d on, got Content-Range %q", b.d.Digest, b.repo, off, resp.Header.Get("Content-Range"))
		}
		return resp.Body, nil
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil, fmt.Errorf("%s has no blob %s, which its manifests name (HTTP 404): the registry's copy of the image is incomplete (garbage-collected, or a push that failed halfway); push the image there again",
			b.repo, b.d.Digest)
	}
	return nil, fmt.Errorf("fetching blob %s from %s: %w", b.d.Digest, b.repo, access.Explain(transport.CheckError(resp, http.StatusOK)))
}

func (b *blobReader) Read(p []byte) (int, error) {
	for {
		n, err := b.body.Read(p)
		b.off += int64(n)
		if n > 0 {
			b.resumes = 0
			b.watch.Reset(b.stall)
		}
		if err == nil || err == io.EOF {
			return n, err
		}
		if !b.stalled.Swap(false) && !resumable(b.ctx, err) {
			return n, err
		}
		if b.d.Size > 0 && b.off >= b.d.Size {
			// Everything arrived before the break; Verify judges it.
			return n, io.EOF
		}
		if b.resumes >= maxResumes {
			return n, fmt.Errorf("fetching blob %s from %s: the connection broke at byte %d and %d tries to resume made no progress: %w", b.d.Digest, b.repo, b.off, maxResumes, err)
		}
		b.resumes++
		b.total++
		b.body.Close()
		body, gerr := b.get(b.off)
		if gerr != nil {
			// A failed request was already retried by the transport.
			b.body = io.NopCloser(errReader{gerr})
			return n, fmt.Errorf("resuming blob %s at byte %d after %v: %w", b.d.Digest, b.off, err, gerr)
		}
		b.body = body
		if n > 0 {
			return n, nil
		}
	}
}

func (b *blobReader) Close() error {
	b.stopWatch()
	return b.body.Close()
}

func (b *blobReader) stopWatch() {
	if b.watch != nil {
		b.watch.Stop()
		b.cancel()
	}
}

// Resumes is how many times the download was resumed, for tests and logs.
func (b *blobReader) Resumes() int { return b.total }

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// resumable reports a read error worth resuming after: the connection broke
// or stalled, and the caller did not cancel.
func resumable(ctx context.Context, err error) bool {
	if ctx.Err() != nil || errors.Is(err, http.ErrBodyReadAfterClose) {
		return false
	}
	var oe *net.OpError
	var ne net.Error
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.As(err, &oe) || (errors.As(err, &ne) && ne.Timeout())
}

// rangeStart reads the first byte position of a Content-Range header,
// "bytes START-END/SIZE".
func rangeStart(h string) (int64, bool) {
	rest, ok := strings.CutPrefix(h, "bytes ")
	if !ok {
		return 0, false
	}
	start, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(start, 10, 64)
	return n, err == nil && n >= 0
}

func (r *Repo) httpClient(ctx context.Context) (*http.Client, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.http != nil {
		return r.http, nil
	}
	// Built once and reused for every blob: one ping, one token, shared
	// with whatever else reads the repository in this run (resolving).
	// A failure is not kept, so a later call may succeed. No retry wrapper
	// here: the client's transport retries, and another layer would
	// multiply tries.
	t, err := r.client.SharedTransport(access.PullKey(r.repo), func() (http.RoundTripper, error) {
		auth, err := authn.Resolve(ctx, r.client.Keychain(), r.repo.Registry)
		if err != nil {
			return nil, fmt.Errorf("credentials for %s: %w", r.repo.RegistryStr(), err)
		}
		base := transport.NewUserAgent(r.client.Transport(), r.client.UserAgent())
		t, err := transport.NewWithContext(ctx, r.repo.Registry, auth, base, []string{r.repo.Scope(transport.PullScope)})
		if err != nil {
			return nil, fmt.Errorf("connecting to %s: %w", r.repo.RegistryStr(), access.Explain(err))
		}
		return t, nil
	})
	if err != nil {
		return nil, err
	}
	r.http = &http.Client{Transport: t}
	return r.http, nil
}
