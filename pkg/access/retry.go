package access

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Defaults of RetryPolicy. Connection failures and overloaded registries are
// usually over within seconds (a restart, a burst); the budget stops a run
// from hanging on a registry that is really down.
const (
	DefaultMaxAttempts   = 6
	DefaultMaxTimeouts   = 2
	DefaultBaseDelay     = 200 * time.Millisecond
	DefaultMaxDelay      = 10 * time.Second
	DefaultMaxRetryAfter = 60 * time.Second
	DefaultRetryBudget   = 2 * time.Minute
)

// RetryPolicy says how a request that failed transiently (a connection
// error or timeout, 408, 429, 500, 502, 503, 504) is tried again. The zero
// value means the defaults.
type RetryPolicy struct {
	// MaxAttempts bounds the tries of one request, the first included;
	// 0 means DefaultMaxAttempts and 1 turns retries off.
	MaxAttempts int
	// MaxTimeouts bounds the tries of one request that end in a timeout
	// (connecting, the TLS handshake, waiting for the answer): a registry
	// that did not answer twice in a row is down or cut off, and each such
	// try costs a full timeout. 0 means DefaultMaxTimeouts.
	MaxTimeouts int
	// BaseDelay and MaxDelay shape the exponential backoff: before try n+1
	// ferry waits a random time between 0 and min(MaxDelay, BaseDelay·2^(n-1))
	// ("full jitter", so that many clients do not retry in step).
	BaseDelay, MaxDelay time.Duration
	// MaxRetryAfter caps a wait a registry asks for with Retry-After.
	MaxRetryAfter time.Duration
	// Budget bounds the time one request may take with all its tries and
	// waits; no wait starts that would end past it.
	Budget time.Duration
	// Sleep waits d or until ctx ends; nil means a real timer. Tests pass a
	// fake that advances a fake clock.
	Sleep func(ctx context.Context, d time.Duration) error
	// Now is the clock the budget is measured by; nil means time.Now.
	Now func() time.Time
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = DefaultMaxAttempts
	}
	if p.MaxTimeouts <= 0 {
		p.MaxTimeouts = DefaultMaxTimeouts
	}
	if p.BaseDelay <= 0 {
		p.BaseDelay = DefaultBaseDelay
	}
	if p.MaxDelay <= 0 {
		p.MaxDelay = DefaultMaxDelay
	}
	if p.MaxRetryAfter <= 0 {
		p.MaxRetryAfter = DefaultMaxRetryAfter
	}
	if p.Budget <= 0 {
		p.Budget = DefaultRetryBudget
	}
	if p.Sleep == nil {
		p.Sleep = sleep
	}
	if p.Now == nil {
		p.Now = time.Now
	}
	return p
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// backoff is the longest wait before attempt n+1 (n ≥ 1) without jitter.
func (p RetryPolicy) backoff(n int) time.Duration {
	d := p.BaseDelay
	for i := 1; i < n && d < p.MaxDelay; i++ {
		d *= 2
	}
	return min(d, p.MaxDelay)
}

// RetryError is returned when a request failed transiently on every attempt
// ferry was willing to make. It unwraps to the last failure: a
// go-containerregistry *transport.Error for an HTTP status, or the network
// error.
type RetryError struct {
	// Host is the registry (or token server) that kept failing.
	Host string
	// Method and Path name the request.
	Method, Path string
	// Status is the last HTTP status, 0 for a connection failure.
	Status int
	// Attempts were made over Elapsed.
	Attempts int
	Elapsed  time.Duration
	// Err is the last failure.
	Err error
}

func (e *RetryError) Error() string {
	over := fmt.Sprintf("after %d attempts over %s", e.Attempts, e.Elapsed.Round(100*time.Millisecond))
	if e.Attempts == 1 {
		over = "and the retry budget left no time to try again"
	}
	said := ""
	var te *transport.Error
	if errors.As(e.Err, &te) && len(te.Errors) > 0 {
		said = fmt.Sprintf("%s: %s", te.Errors[0].Code, te.Errors[0].Message)
	}
	var dial *net.OpError
	var ne net.Error
	switch {
	case e.Status == http.StatusTooManyRequests:
		if said != "" {
			said = ": " + said
		}
		return fmt.Sprintf("the registry at %s kept rate-limiting %s %s (429 Too Many Requests%s) %s: wait and run again, or log in to raise the limit; completed work is kept",
			e.Host, e.Method, e.Path, said, over)
	case e.Status == 0 && errors.Is(e.Err, io.ErrUnexpectedEOF):
		return fmt.Sprintf("the registry at %s kept cutting its answer to %s %s short %s: %v: check its health (or a proxy in between), or run again later; completed work is kept",
			e.Host, e.Method, e.Path, over, e.Err)
	case e.Status != 0:
		if said != "" {
			said = " (" + said + ")"
		}
		return fmt.Sprintf("the registry at %s kept answering %d %s%s to %s %s %s: check its health, or run again later; completed work is kept",
			e.Host, e.Status, http.StatusText(e.Status), said, e.Method, e.Path, over)
	case !(errors.As(e.Err, &dial) && dial.Op == "dial") && errors.As(e.Err, &ne) && ne.Timeout():
		return fmt.Sprintf("the registry at %s accepted connections but did not answer %s %s in time %s: %v: check its health, or run again later; completed work is kept",
			e.Host, e.Method, e.Path, over, e.Err)
	default:
		return fmt.Sprintf("cannot reach the registry at %s for %s %s %s: %v: check that it is up and that the address is right, or run again later; completed work is kept",
			e.Host, e.Method, e.Path, over, e.Err)
	}
}

func (e *RetryError) Unwrap() error { return e.Err }

// retryTransport retries requests that failed transiently, and slows down
// the whole run against a host that answers 429 (see limiter).
type retryTransport struct {
	next   http.RoundTripper
	policy RetryPolicy
	limits *limiter
	// headerTimeout bounds each try of a GET or HEAD until its headers
	// arrive; commitTimeout that of a request sending data.
	headerTimeout, commitTimeout time.Duration
}

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	p := t.policy
	start := p.Now()
	// A body that cannot be sent again makes the first try the only one.
	replayable := req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
	timeouts := 0
	for attempt := 1; ; attempt++ {
		r := req
		if attempt > 1 && req.Body != nil && req.Body != http.NoBody {
			body, err := req.GetBody()
			if err != nil {
				return nil, fmt.Errorf("%s %s: rewinding the request body to retry: %w", req.Method, req.URL.Redacted(), err)
			}
			r = req.Clone(ctx)
			r.Body = body
		}
		resp, err := t.once(r)
		if err == nil && isManifestGet(r, resp) {
			// A manifest is small and read whole by every caller: read
			// here, a body cut short is a failed try like a broken
			// connection, under the same policy and budget.
			err = bufferBody(r, resp)
			if err != nil {
				resp = nil
			}
		}
		wait, retry := retryable(ctx, resp, err, p, attempt)
		if !retry || !replayable {
			return resp, err
		}
		if isTimeout(err) {
			timeouts++
		}
		elapsed := p.Now().Sub(start)
		if attempt >= p.MaxAttempts || timeouts >= p.MaxTimeouts || elapsed+wait > p.Budget {
			return nil, giveUp(req, resp, err, attempt, elapsed)
		}
		if resp != nil {
			// Drained, so the connection can serve the next try.
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
		}
		if err := p.Sleep(ctx, wait); err != nil {
			return nil, fmt.Errorf("%s %s: waiting to try again: %w", req.Method, req.URL.Redacted(), err)
		}
	}
}

// maxBufferedManifest bounds how much of a manifest body is read ahead; the
// registries' own cap is 4 MiB, and callers refuse more than that.
const maxBufferedManifest = 4<<20 + 1

// isManifestGet reports a successful GET of a manifest (by tag or digest),
// whose body the transport reads before handing it on.
func isManifestGet(req *http.Request, resp *http.Response) bool {
	return req.Method == http.MethodGet && resp.StatusCode == http.StatusOK && strings.Contains(req.URL.Path, "/manifests/")
}

// bufferBody reads a manifest body into memory, up to maxBufferedManifest
// (the rest, if any, follows from the connection: the caller refuses it),
// and replaces resp.Body by what was read. A read that fails (the
// connection closed partway: unexpected EOF, a reset) closes the body and
// returns the error for the retry loop to judge.
func bufferBody(req *http.Request, resp *http.Response) error {
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBufferedManifest))
	if err != nil {
		resp.Body.Close()
		return fmt.Errorf("%s %s: reading the answer after %d bytes: %w", req.Method, req.URL.Redacted(), len(b), err)
	}
	if len(b) < maxBufferedManifest {
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(b))
		return nil
	}
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(b), resp.Body), resp.Body}
	return nil
}

// once makes one try within the host's in-flight limit.
func (t *retryTransport) once(req *http.Request) (*http.Response, error) {
	h := t.limits.host(req.URL.Host)
	release, err := h.acquire(req.Context())
	if err != nil {
		return nil, err
	}
	resp, err := t.withTimeout(req)
	// The slot is held until the headers arrive, not until the body is
	// read: a caller may keep a body open while it makes another request
	// to the same host (copying within one registry), which must not
	// deadlock at a limit of one. Rate limits count requests anyway.
	release(resp != nil && resp.StatusCode == http.StatusTooManyRequests)
	return resp, err
}

// withTimeout makes one try, bounded until its headers arrive. The timeout
// is kept here rather than in http.Transport so that reads and writes get
// different ones.
func (t *retryTransport) withTimeout(req *http.Request) (*http.Response, error) {
	d := t.headerTimeout
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		d = t.commitTimeout
	}
	ctx, cancel := context.WithCancel(req.Context())
	var timedOut atomic.Bool
	timer := time.AfterFunc(d, func() {
		timedOut.Store(true)
		cancel()
	})
	r := req.WithContext(ctx)
	if req.Body != nil && req.Body != http.NoBody {
		// An upload of many GiB takes longer than any fixed bound: the
		// clock restarts whenever the body makes progress, so it measures
		// a stalled upload, and after the last byte, the registry's commit.
		r.Body = &progressBody{ReadCloser: req.Body, touch: func() { timer.Reset(d) }}
	}
	resp, err := t.next.RoundTrip(r)
	if !timer.Stop() && timedOut.Load() {
		if resp != nil {
			resp.Body.Close()
		}
		cancel()
		return nil, &headerTimeoutError{after: d}
	}
	if err != nil {
		cancel()
		return nil, err
	}
	// The body is read under ctx: it is released when the body is closed.
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

// headerTimeoutError is a try that got no answer in time.
type headerTimeoutError struct{ after time.Duration }

func (e *headerTimeoutError) Error() string {
	return fmt.Sprintf("no answer within %s", e.after)
}

func (e *headerTimeoutError) Timeout() bool   { return true }
func (e *headerTimeoutError) Temporary() bool { return false }

func isTimeout(err error) bool {
	var ne net.Error
	return err != nil && errors.As(err, &ne) && ne.Timeout()
}

// retryable reports whether the outcome of try n is worth another, and how
// long to wait first: what the registry asked for with Retry-After (capped),
// else a jittered exponential backoff.
func retryable(ctx context.Context, resp *http.Response, err error, p RetryPolicy, n int) (time.Duration, bool) {
	if ctx.Err() != nil {
		return 0, false
	}
	if err != nil {
		return jitter(p.backoff(n)), transientNetError(err)
	}
	switch resp.StatusCode {
	case http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
		http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		if d, ok := retryAfter(resp.Header.Get("Retry-After"), p.Now()); ok {
			return min(d, p.MaxRetryAfter), true
		}
		return jitter(p.backoff(n)), true
	}
	return 0, false
}

// transientNetError reports connection failures that another try may not
// meet: refused, reset, cut short, timed out. Certificate problems, unknown
// hosts and cancellations are not among them.
func transientNetError(err error) bool {
	var cert *tls.CertificateVerificationError
	var unknownAuthority x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	var dns *net.DNSError
	switch {
	case errors.Is(err, context.Canceled):
		// The request's own deadline is seen by retryable; what is left
		// here claiming DeadlineExceeded is a timeout of the transport
		// (response headers, TLS handshake), worth another try.
		return false
	case errors.As(err, &cert), errors.As(err, &unknownAuthority), errors.As(err, &hostname), errors.As(err, &invalid):
		return false
	case errors.As(err, &dns):
		return dns.IsTimeout || dns.IsTemporary
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNABORTED),
		errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ETIMEDOUT), errors.Is(err, syscall.EHOSTUNREACH),
		errors.Is(err, syscall.ENETUNREACH), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// retryAfter reads a Retry-After header: seconds, or an HTTP date.
func retryAfter(h string, now time.Time) (time.Duration, bool) {
	if h == "" {
		return 0, false
	}
	if s, err := strconv.Atoi(h); err == nil {
		if s < 0 {
			return 0, false
		}
		// Capped by the caller anyway; here only kept from overflowing.
		return time.Duration(min(s, 1<<30)) * time.Second, true
	}
	if t, err := http.ParseTime(h); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

func jitter(max time.Duration) time.Duration {
	if max <= 0 {
		return 0
	}
	return rand.N(max + 1)
}

func giveUp(req *http.Request, resp *http.Response, err error, attempts int, elapsed time.Duration) error {
	e := &RetryError{Host: req.URL.Host, Method: req.Method, Path: req.URL.Path, Attempts: attempts, Elapsed: elapsed, Err: err}
	if resp != nil {
		e.Status = resp.StatusCode
		// The registry's own words (its error code and message) go with
		// the status, which callers can still read as a *transport.Error.
		resp.Body = struct {
			io.Reader
			io.Closer
		}{io.LimitReader(resp.Body, 64<<10), resp.Body}
		e.Err = transport.CheckError(resp, http.StatusOK)
		resp.Body.Close()
	}
	return e
}

// progressBody calls touch on every read of a request body.
type progressBody struct {
	io.ReadCloser
	touch func()
}

func (b *progressBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.touch()
	return n, err
}
