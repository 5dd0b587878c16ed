package transfer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ferry-dev/ferry/pkg/access"
	"github.com/ferry-dev/ferry/pkg/graph"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// conn makes raw requests to one registry through an authenticated
// transport, so manifests travel as the exact bytes and blobs as streams.
type conn struct {
	reg    name.Registry
	scheme string
	http   *http.Client
	// userAgent names ferry's version, as go-containerregistry's calls do.
	userAgent string
	// mountsDeclined is set once the registry answered a mount from a
	// repository known to hold the blob with an upload session (or an
	// error): it does not mount, so a mount says nothing about presence.
	mountsDeclined atomic.Bool
}

// dial pings reg and obtains credentials for scopes. Transient failures
// are retried by the caller's operations, not here: a registry that is
// down should be reported at once.
func dial(ctx context.Context, c *access.Client, reg name.Registry, scopes []string) (*conn, error) {
	auth, err := authn.Resolve(ctx, c.Keychain(), reg)
	if err != nil {
		return nil, fmt.Errorf("credentials for %s: %w", reg.RegistryStr(), err)
	}
	t, err := transport.NewWithContext(ctx, reg, auth, c.Transport(), scopes)
	if err != nil {
		// The ping tries HTTPS and, for an insecure host, HTTP, and joins
		// both failures; when the transport gave up retrying, its error
		// says it all once.
		return nil, fmt.Errorf("connecting to %s: %w", reg.RegistryStr(), access.Explain(err))
	}
	return &conn{reg: reg, scheme: reg.Scheme(), http: &http.Client{Transport: t}, userAgent: c.UserAgent()}, nil
}

func (c *conn) url(repo name.Repository, kind, ref string) string {
	u := url.URL{Scheme: c.scheme, Host: c.reg.RegistryStr(), Path: fmt.Sprintf("/v2/%s/%s/%s", repo.RepositoryStr(), kind, ref)}
	return u.String()
}

func (c *conn) do(req *http.Request) (*http.Response, error) {
	req.Header.Set("User-Agent", c.userAgent)
	resp, err := c.http.Do(req)
	return resp, access.RedactURL(err)
}

// headBlob reports whether repo holds the blob.
func (c *conn) headBlob(ctx context.Context, repo name.Repository, d v1.Hash) (bool, error) {
	return c.head(ctx, c.url(repo, "blobs", d.String()), "")
}

// headManifest reports whether repo holds the manifest named ref (a digest
// or tag) and, if so, the digest the registry says it has.
func (c *conn) headManifest(ctx context.Context, repo name.Repository, ref string) (bool, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, c.url(repo, "manifests", ref), nil)
	if err != nil {
		return false, "", err
	}
	req.Header.Set("Accept", graph.ManifestAccept)
	resp, err := c.do(req)
	if err != nil {
		return false, "", err
	}
	defer drain(resp)
	switch resp.StatusCode {
	case http.StatusOK:
		return true, resp.Header.Get("Docker-Content-Digest"), nil
	case http.StatusNotFound:
		return false, "", nil
	}
	return false, "", checkResp(resp, http.StatusOK)
}

func (c *conn) head(ctx context.Context, u, accept string) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, u, nil)
	if err != nil {
		return false, err
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := c.do(req)
	if err != nil {
		return false, err
	}
	defer drain(resp)
	switch resp.StatusCode {
	case http.StatusOK:
		return true, nil
	case http.StatusNotFound:
		return false, nil
	}
	return false, checkResp(resp, http.StatusOK)
}

// getManifest fetches the raw manifest named by digest.
func (c *conn) getManifest(ctx context.Context, repo name.Repository, d v1.Descriptor) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url(repo, "manifests", d.Digest.String()), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", graph.ManifestAccept)
	resp, err := c.do(req)
	if err != nil {
		return nil, err
	}
	defer drain(resp)
	if resp.StatusCode == http.StatusNotFound {
		return nil, errNotFound
	}
	if err := checkResp(resp, http.StatusOK); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, graph.MaxManifestSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > graph.MaxManifestSize {
		return nil, fmt.Errorf("manifest %s: %w", d.Digest, graph.ErrTooLarge)
	}
	return b, nil
}

var errNotFound = errors.New("not found")

// putManifest puts raw under ref (its digest or a tag) with mt as its
// Content-Type, and checks the registry computed the digest we did.
func (c *conn) putManifest(ctx context.Context, repo name.Repository, ref string, mt types.MediaType, raw []byte, digest v1.Hash) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, c.url(repo, "manifests", ref), bytes.NewReader(raw))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", string(mt))
	resp, err := c.do(req)
	if err != nil {
		return err
	}
	defer drain(resp)
	if err := checkResp(resp, http.StatusCreated, http.StatusOK, http.StatusAccepted); err != nil {
		return err
	}
	if got := resp.Header.Get("Docker-Content-Digest"); got != "" && got != digest.String() {
		return fmt.Errorf("%w: the registry stored it as %s, not %s", ErrDigestChanged, got, digest)
	}
	return nil
}

// ErrDigestChanged is returned when a registry reports another digest for
// what ferry sent: it re-encoded the manifest, and the promise is broken.
var ErrDigestChanged = errors.New("registry changed the digest")

// startUpload opens an upload session in repo and returns its location.
// With from set it first asks the registry to mount the blob from that
// repository: mounted is then true when no upload is needed.
func (c *conn) startUpload(ctx context.Context, repo name.Repository, d v1.Hash, from *name.Repository) (location string, mounted bool, err error) {
	u := url.URL{Scheme: c.scheme, Host: c.reg.RegistryStr(), Path: fmt.Sprintf("/v2/%s/blobs/uploads/", repo.RepositoryStr())}
	if from != nil {
		u.RawQuery = url.Values{"mount": {d.String()}, "from": {from.RepositoryStr()}}.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), nil)
	if err != nil {
		return "", false, err
	}
	resp, err := c.do(req)
	if err != nil {
		return "", false, err
	}
	defer drain(resp)
	if from != nil {
		switch resp.StatusCode {
		case http.StatusCreated:
			return "", true, nil
		case http.StatusBadRequest, http.StatusForbidden, http.StatusNotFound, http.StatusMethodNotAllowed:
			// A registry that refuses the mount itself (rather than
			// opening an upload, as the spec asks) still takes the blob
			// by a plain upload.
			c.mountsDeclined.Store(true)
			return c.startUpload(ctx, repo, d, nil)
		}
	}
	if err := checkResp(resp, http.StatusAccepted); err != nil {
		return "", false, err
	}
	loc, err := resp.Location()
	if err != nil {
		return "", false, fmt.Errorf("POST %s: no upload location in the answer: %w", redact(u.String()), err)
	}
	return loc.String(), false, nil
}

// finishUpload streams body (size bytes) into the session at location in
// one PUT, naming the digest the registry must find.
func (c *conn) finishUpload(ctx context.Context, location string, d v1.Hash, size int64, body io.Reader) error {
	u, err := url.Parse(location)
	if err != nil {
		return fmt.Errorf("upload location %q: %w", redact(location), err)
	}
	q := u.Query()
	q.Set("digest", d.String())
	u.RawQuery = q.Encode()
	if size == 0 {
		body = http.NoBody
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u.String(), body)
	if err != nil {
		return err
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := c.do(req)
	if err != nil {
		return err
	}
	defer drain(resp)
	if err := checkResp(resp, http.StatusCreated, http.StatusNoContent); err != nil {
		return err
	}
	if got := resp.Header.Get("Docker-Content-Digest"); got != "" && got != d.String() {
		return fmt.Errorf("%w: the registry stored blob %s as %s", ErrDigestChanged, d, got)
	}
	return nil
}

func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}

func redact(u string) string {
	if i := strings.IndexByte(u, '?'); i >= 0 {
		return u[:i]
	}
	return u
}

// checkResp turns an unexpected status into go-containerregistry's error,
// which names the request and the registry's error codes, remembering a
// Retry-After the registry asked for.
func checkResp(resp *http.Response, codes ...int) error {
	err := transport.CheckError(resp, codes...)
	if err == nil {
		return nil
	}
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		return access.Explain(err) // the login advice, not the raw details
	}
	if s := resp.Header.Get("Retry-After"); s != "" {
		if secs, perr := strconv.Atoi(s); perr == nil && secs >= 0 {
			return &retryAfterError{wait: time.Duration(secs) * time.Second, err: err}
		}
	}
	return err
}

type retryAfterError struct {
	wait time.Duration
	err  error
}

func (e *retryAfterError) Error() string { return e.err.Error() }
func (e *retryAfterError) Unwrap() error { return e.err }

// backoff is the wait before each retry of a transient failure; a variable
// so tests can shorten it.
var backoff = []time.Duration{time.Second, 3 * time.Second, 9 * time.Second}

// maxRetryAfter caps how long a registry's Retry-After is honoured.
const maxRetryAfter = 60 * time.Second

// retry runs op until it succeeds, fails for good, or the retries run out.
func retry(ctx context.Context, op func() error) error {
	for i := 0; ; i++ {
		err := op()
		if err == nil || i >= len(backoff) || !transient(err) {
			return err
		}
		wait := backoff[i]
		var ra *retryAfterError
		if errors.As(err, &ra) && ra.wait > wait {
			wait = min(ra.wait, maxRetryAfter)
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
	}
}

// transient reports whether trying again may help: timeouts, resets,
// 408, 429 and 5xx. A refused connection is not: the registry is down or
// the address is wrong, and the user should hear it now.
func transient(err error) bool {
	switch {
	case err == nil, errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return false
	case errors.Is(err, graph.ErrDigestMismatch), errors.Is(err, ErrDigestChanged):
		return false
	case errors.Is(err, syscall.ECONNREFUSED):
		return false
	case errors.As(err, new(*access.RetryError)):
		// The transport already tried again, as long as it was worth it.
		return false
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.EPIPE):
		return true
	}
	var te *transport.Error
	if errors.As(err, &te) {
		switch te.StatusCode {
		case http.StatusRequestTimeout, http.StatusTooManyRequests,
			http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return true
		}
		return false
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
