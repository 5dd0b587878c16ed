package testutil

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Kind is what a registry request is about, from its path.
type Kind string

// Kinds of registry requests.
const (
	KindPing     Kind = "ping"     // /v2/
	KindManifest Kind = "manifest" // /v2/<name>/manifests/<ref>
	KindBlob     Kind = "blob"     // /v2/<name>/blobs/<digest>
	KindUpload   Kind = "upload"   // /v2/<name>/blobs/uploads/...
	KindTags     Kind = "tags"     // /v2/<name>/tags/list
	KindOther    Kind = "other"
)

// KindOf classifies a registry URL path.
func KindOf(path string) Kind {
	switch {
	case path == "/v2/" || path == "/v2":
		return KindPing
	case !strings.HasPrefix(path, "/v2/"):
		return KindOther
	case strings.Contains(path, "/blobs/uploads/") || strings.HasSuffix(path, "/blobs/uploads"):
		return KindUpload
	case strings.Contains(path, "/blobs/"):
		return KindBlob
	case strings.Contains(path, "/manifests/"):
		return KindManifest
	case strings.HasSuffix(path, "/tags/list"):
		return KindTags
	}
	return KindOther
}

// Fault is one rule of a FaultProxy: which requests it matches, which of
// those it hits, and what it does to them. Rules are tried in the order
// added; the first that hits a request decides its fate.
type Fault struct {
	// Method matches the request method; "" matches any.
	Method string
	// Kind matches the kind of request; "" matches any.
	Kind Kind
	// PathContains matches requests whose path contains it, e.g. a digest.
	PathContains string

	// First hits only the first First matching requests; 0 means no limit.
	First int
	// Every hits the Every-th, 2·Every-th… matching request; 0 or 1 means
	// each one.
	Every int
	// Fraction hits this share of matching requests at random, drawn from
	// Seed so that a run can be repeated; 0 means all.
	Fraction float64
	Seed     uint64

	// Status answers the request with this status (and an error body in
	// the distribution format) instead of forwarding it.
	Status int
	// RetryAfter goes with Status as the Retry-After header, e.g. "1".
	RetryAfter string
	// Delay holds the request this long before anything else happens.
	Delay time.Duration
	// CutAfter forwards the request but closes the connection once this
	// many bytes of the response body were sent; the client sees the body
	// end early. 0 means no cut (use Status for an empty answer).
	CutAfter int64
	// StallAfter forwards the request but, once this many bytes of the body
	// were sent, sends nothing more until the client gives up: a stuck
	// connection. 0 means no stall.
	StallAfter int64
	// IgnoreRange drops the Range header before forwarding, as a registry
	// or cache that does not do partial answers: the client gets 200 and
	// the whole body.
	IgnoreRange bool
	// CorruptAt flips the bits of the body byte at this offset (counted
	// from 1, so that 0 means off): the registry then serves bytes that do
	// not match their digest.
	CorruptAt int64
	// Body replaces the response body, e.g. another manifest served for a
	// digest. Headers stay the registry's, Content-Length excepted.
	Body []byte

	rng     *rand.Rand
	matched int
	hits    int
}

// Request is one request the proxy saw, and what it answered.
type Request struct {
	Method string
	Path   string
	Kind   Kind
	// Range is the Range header, for resumed downloads.
	Range string
	// Status is what the client was sent (after any fault); 0 while the
	// request has no answer yet.
	Status int
	// Fault is the index of the rule that hit it, -1 for none.
	Fault int
}

// FaultProxy is a reverse proxy on 127.0.0.1 in front of a registry that
// injects faults by rule and records every request. Clients talk to Host
// (plain HTTP: pass it as an insecure registry); the proxy keeps that Host
// header so that the upload locations the registry hands out lead back
// through the proxy.
type FaultProxy struct {
	// Host is "127.0.0.1:PORT", the registry part of references through
	// the proxy.
	Host string

	srv   *httptest.Server
	proxy *httputil.ReverseProxy

	mu          sync.Mutex
	faults      []*Fault
	seen        []*Request
	inFlight    int
	maxInFlight int
	conns       int // client connections open
}

func (p *FaultProxy) connState(_ net.Conn, s http.ConnState) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch s {
	case http.StateNew:
		p.conns++
	case http.StateClosed, http.StateHijacked:
		p.conns--
	}
}

// StartFaultProxy starts a proxy to the registry at target ("host:port",
// plain HTTP) and closes it when the test ends.
func StartFaultProxy(t testing.TB, target string) *FaultProxy {
	t.Helper()
	u := &url.URL{Scheme: "http", Host: target}
	p := &FaultProxy{}
	p.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.Out.Host = pr.In.Host
		},
		// Every write reaches the client at once, so a cut falls where
		// it was asked to.
		FlushInterval:  -1,
		ModifyResponse: p.modify,
		ErrorLog:       discardLog,
	}
	p.srv = httptest.NewUnstartedServer(http.HandlerFunc(p.serve))
	p.srv.Config.ConnState = p.connState
	p.srv.Start()
	t.Cleanup(p.srv.Close)
	p.Host = p.srv.Listener.Addr().String()
	return p
}

// Ref returns a reference to repo through the proxy.
func (p *FaultProxy) Ref(repo string) string { return p.Host + "/" + repo }

// Add appends a rule and returns it.
func (p *FaultProxy) Add(f Fault) *Fault {
	p.mu.Lock()
	defer p.mu.Unlock()
	nf := f
	if nf.Fraction > 0 {
		nf.rng = rand.New(rand.NewPCG(nf.Seed, nf.Seed^0x9e3779b97f4a7c15))
	}
	p.faults = append(p.faults, &nf)
	return &nf
}

// Clear removes every rule; what was seen is kept.
func (p *FaultProxy) Clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults = nil
}

// FailEvery answers every nth request of any kind with status.
func (p *FaultProxy) FailEvery(n, status int) *Fault {
	return p.Add(Fault{Every: n, Status: status})
}

// RateLimit answers the first k requests whose path contains pathContains
// ("" for all) with 429 and Retry-After: retryAfter.
func (p *FaultProxy) RateLimit(k int, pathContains, retryAfter string) *Fault {
	return p.Add(Fault{First: k, PathContains: pathContains, Status: http.StatusTooManyRequests, RetryAfter: retryAfter})
}

// CutBlob cuts the body of the first k GETs of the blob digest names ("" for
// any blob) after n bytes.
func (p *FaultProxy) CutBlob(k int, digest string, n int64) *Fault {
	return p.Add(Fault{Method: http.MethodGet, Kind: KindBlob, PathContains: digest, First: k, CutAfter: n})
}

// CorruptBlob flips a byte in the middle of every GET of the blob digest
// names, whose size is size.
func (p *FaultProxy) CorruptBlob(digest string, size int64) *Fault {
	return p.Add(Fault{Method: http.MethodGet, Kind: KindBlob, PathContains: digest, CorruptAt: size/2 + 1})
}

// ServeManifest answers every GET of the manifest at ref (a digest or tag)
// with raw instead of what the registry holds.
func (p *FaultProxy) ServeManifest(ref string, raw []byte) *Fault {
	return p.Add(Fault{Method: http.MethodGet, Kind: KindManifest, PathContains: "/manifests/" + ref, Body: raw})
}

// Seen returns every request so far, in the order they arrived.
func (p *FaultProxy) Seen() []Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Request, len(p.seen))
	for i, r := range p.seen {
		out[i] = *r
	}
	return out
}

// Count is how many requests of method ("" for any) and kind ("" for any)
// the proxy saw whose path contains pathContains.
func (p *FaultProxy) Count(method string, kind Kind, pathContains string) int {
	n := 0
	for _, r := range p.Seen() {
		if (method == "" || r.Method == method) && (kind == "" || r.Kind == kind) && strings.Contains(r.Path, pathContains) {
			n++
		}
	}
	return n
}

// Hits is how many requests rule f hit.
func (p *FaultProxy) Hits(f *Fault) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return f.hits
}

// MaxInFlight is the most requests the proxy was serving at once since the
// start or the last ResetStats.
func (p *FaultProxy) MaxInFlight() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.maxInFlight
}

// WaitIdle waits until the proxy serves no request. A client can hold its
// whole answer before the handler returns, so a test that counts in-flight
// requests after its own calls return must wait for the handlers too.
func (p *FaultProxy) WaitIdle(t testing.TB) {
	t.Helper()
	p.waitFor(t, func() bool { return p.inFlight == 0 }, "serving requests")
}

// WaitClosed waits until every client connection is closed and every
// request served: call it after killing the only client. Requests the
// client sent just before it died may still sit unread in the sockets;
// the server reads and serves them before it sees the end of the
// connection, so only a closed connection is a finished one.
func (p *FaultProxy) WaitClosed(t testing.TB) {
	t.Helper()
	p.waitFor(t, func() bool { return p.inFlight == 0 && p.conns == 0 }, "holding connections")
}

func (p *FaultProxy) waitFor(t testing.TB, done func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		p.mu.Lock()
		ok, n, c := done(), p.inFlight, p.conns
		p.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("fault proxy still %s after 10s: %d requests in flight, %d connections open", what, n, c)
		}
		time.Sleep(time.Millisecond)
	}
}

// ResetStats forgets what was seen and the in-flight peak; rules stay.
func (p *FaultProxy) ResetStats() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seen = nil
	p.maxInFlight = p.inFlight
}

type faultKey struct{}

func contextWithFault(r *http.Request, f *Fault) context.Context {
	return context.WithValue(r.Context(), faultKey{}, f)
}

func faultFrom(r *http.Request) *Fault {
	f, _ := r.Context().Value(faultKey{}).(*Fault)
	return f
}

var discardLog = log.New(io.Discard, "", 0)

// pick records the request as it arrives (a client may have its whole
// answer before the handler returns), counts it in flight and returns the
// rule that hits it, if any.
func (p *FaultProxy) pick(r *http.Request) (*Request, *Fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inFlight++
	p.maxInFlight = max(p.maxInFlight, p.inFlight)
	kind := KindOf(r.URL.Path)
	seen := &Request{Method: r.Method, Path: r.URL.Path, Kind: kind, Range: r.Header.Get("Range"), Fault: -1}
	p.seen = append(p.seen, seen)
	for i, f := range p.faults {
		if (f.Method != "" && f.Method != r.Method) || (f.Kind != "" && f.Kind != kind) || !strings.Contains(r.URL.Path, f.PathContains) {
			continue
		}
		f.matched++
		if f.First > 0 && f.matched > f.First {
			continue
		}
		if f.Every > 1 && f.matched%f.Every != 0 {
			continue
		}
		if f.rng != nil && f.rng.Float64() >= f.Fraction {
			continue
		}
		f.hits++
		seen.Fault = i
		return seen, f
	}
	return seen, nil
}

func (p *FaultProxy) serve(w http.ResponseWriter, r *http.Request) {
	seen, f := p.pick(r)
	sw := &statusWriter{ResponseWriter: w}
	sw.onStatus = func(code int) {
		p.mu.Lock()
		defer p.mu.Unlock()
		seen.Status = code
	}
	defer func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.inFlight--
	}()
	if f != nil && f.Delay > 0 {
		select {
		case <-time.After(f.Delay):
		case <-r.Context().Done():
			return
		}
	}
	if f != nil && f.Status != 0 {
		if f.RetryAfter != "" {
			w.Header().Set("Retry-After", f.RetryAfter)
		}
		w.Header().Set("Content-Type", "application/json")
		sw.WriteHeader(f.Status)
		if r.Method != http.MethodHead {
			code := "UNAVAILABLE"
			if f.Status == http.StatusTooManyRequests {
				code = "TOOMANYREQUESTS"
			}
			fmt.Fprintf(sw, `{"errors":[{"code":%q,"message":"injected by the fault proxy"}]}`, code)
		}
		return
	}
	if f != nil {
		r = r.WithContext(contextWithFault(r, f))
		if f.IgnoreRange {
			r.Header.Del("Range")
		}
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		// A write the registry has whole is seen through even when the
		// client died: the registry would finish it anyway, and the
		// handler's return must mean the registry is done with it.
		r = r.WithContext(context.WithoutCancel(r.Context()))
	}
	p.proxy.ServeHTTP(sw, r)
}

// modify applies a rule's body faults to the registry's answer.
func (p *FaultProxy) modify(resp *http.Response) error {
	f := faultFrom(resp.Request)
	if f == nil || resp.StatusCode >= 300 || resp.Request.Method == http.MethodHead {
		return nil
	}
	switch {
	case f.Body != nil:
		resp.Body.Close()
		resp.Body = io.NopCloser(strings.NewReader(string(f.Body)))
		resp.ContentLength = int64(len(f.Body))
		resp.Header.Set("Content-Length", strconv.Itoa(len(f.Body)))
	case f.CutAfter > 0:
		resp.Body = &cutBody{r: io.LimitReader(resp.Body, f.CutAfter), c: resp.Body}
	case f.StallAfter > 0:
		resp.Body = &stallBody{r: io.LimitReader(resp.Body, f.StallAfter), c: resp.Body, done: resp.Request.Context().Done()}
	case f.CorruptAt > 0:
		resp.Body = &corruptBody{rc: resp.Body, at: f.CorruptAt - 1}
	}
	return nil
}

// errCut makes the reverse proxy abort the response: the connection closes
// with the body short of its Content-Length.
var errCut = errors.New("body cut by the fault proxy")

type cutBody struct {
	r io.Reader
	c io.Closer
}

func (b *cutBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF {
		return n, errCut
	}
	return n, err
}

func (b *cutBody) Close() error { return b.c.Close() }

type stallBody struct {
	r    io.Reader
	c    io.Closer
	done <-chan struct{}
}

func (b *stallBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF {
		<-b.done
		return n, errCut
	}
	return n, err
}

func (b *stallBody) Close() error { return b.c.Close() }

type corruptBody struct {
	rc  io.ReadCloser
	at  int64
	off int64
}

func (b *corruptBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if b.at >= b.off && b.at < b.off+int64(n) {
		p[b.at-b.off] ^= 0xff
	}
	b.off += int64(n)
	return n, err
}

func (b *corruptBody) Close() error { return b.rc.Close() }

// statusWriter remembers the status sent. It passes Flush on (the proxy
// flushes every write) but not Hijack, which the proxy does not need.
type statusWriter struct {
	http.ResponseWriter
	status   int
	onStatus func(int)
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
		w.onStatus(code)
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// StartBlackhole listens on 127.0.0.1, accepts connections and never answers
// on them, like a registry behind a stuck load balancer. It returns the
// "host:port" and stops when the test ends.
func StartBlackhole(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listening for a blackhole: %v", err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				<-done
				conn.Close()
			})
		}
	})
	t.Cleanup(func() {
		close(done)
		l.Close()
		wg.Wait()
	})
	return l.Addr().String()
}

// ClosedPort returns "127.0.0.1:PORT" where nothing listens: a registry that
// is down. Connections are refused at once. The port stays bound (without
// listening) until the test ends, so no other test's server can take it.
func ClosedPort(t testing.TB) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	syscall.CloseOnExec(fd) // or a registry or ferry started later keeps the port
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
}
