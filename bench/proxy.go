package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// proxy is a counting reverse proxy on loopback in front of a registry: every
// byte a tool sends (retransmissions and duplicates included) and receives
// passes through it. With proxyOptions it also stands for a registry across
// a slow link: a delay per request and token authentication.
type proxy struct {
	Host string
	srv  *http.Server
	opts proxyOptions

	recv, sent atomic.Int64 // request and response body bytes
	mu         sync.Mutex
	uploads    map[string]int // completed blob uploads by digest
	mounts     int
	manifests  int
	requests   int
	kinds      map[string]int // requests by requestKind
}

// proxyOptions make the proxy a remote registry.
type proxyOptions struct {
	// Delay holds every request (pings and token requests included) this
	// long before it is answered: a round trip across a WAN.
	Delay time.Duration
	// Auth makes the proxy answer as Docker Hub does: 401 with a Bearer
	// challenge to a request without a token for its repository and action,
	// and anonymous tokens from /token, so that pings and token requests
	// appear in the counts as they would against a real registry.
	Auth bool
}

// counts is a snapshot of what a proxy saw.
type counts struct {
	Recv, Sent      int64
	BlobUploads     int // completed uploads, duplicates included
	DistinctUploads int
	Mounts          int
	ManifestPuts    int
	Requests        int
	Kinds           map[string]int // requests by requestKind, 401s included
}

func newTransport() *http.Transport {
	return &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 128,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
		WriteBufferSize:     256 << 10,
		ReadBufferSize:      256 << 10,
	}
}

// startProxy listens on a free loopback port and forwards to host.
func startProxy(host string) (*proxy, error) { return startProxyOpts(host, proxyOptions{}) }

// startProxyOpts is startProxy with a delay and authentication.
func startProxyOpts(host string, opts proxyOptions) (*proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &proxy{Host: ln.Addr().String(), opts: opts, uploads: map[string]int{}, kinds: map[string]int{}}
	target := &url.URL{Scheme: "http", Host: host}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.Transport = newTransport()
	rp.FlushInterval = -1
	rp.ErrorLog = log.New(io.Discard, "", 0)
	rp.ModifyResponse = func(resp *http.Response) error {
		p.observe(resp)
		resp.Body = &countReader{r: resp.Body, n: &p.sent}
		return nil
	}
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if traceOut != nil {
			start := time.Now()
			defer func() { trace(p.Host, r, start) }()
		}
		if p.opts.Delay > 0 {
			t := time.NewTimer(p.opts.Delay)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return
			}
		}
		if p.opts.Auth && p.answerAuth(w, r) {
			return
		}
		if r.Body != nil {
			r.Body = &countReader{r: r.Body, n: &p.recv}
		}
		// The registry builds upload locations from Host: keep the proxy's so
		// every follow-up request passes through it too.
		rp.ServeHTTP(w, r)
	})}
	if opts.Delay > 0 {
		ln = &slowListener{Listener: ln, delay: opts.Delay}
	}
	go p.srv.Serve(ln)
	atExit(p.close)
	return p, nil
}

// traceOut, when BENCH_TRACE names a file, receives one line per request
// every proxy answered: arrival and end in ms since the bench started, the
// proxy, the method and the path. It shows where a tool's time goes across
// a slow link (which phase waits on which).
var (
	traceMu    sync.Mutex
	traceOut   io.Writer
	traceStart = time.Now()
)

func trace(host string, r *http.Request, start time.Time) {
	traceMu.Lock()
	defer traceMu.Unlock()
	fmt.Fprintf(traceOut, "%d %d %s %s %s\n", start.Sub(traceStart).Milliseconds(), time.Since(traceStart).Milliseconds(), host, r.Method, r.URL.Path)
}

// slowListener makes a new connection cost a round trip, as the TCP
// handshake does across a WAN: its first read waits delay. A tool that
// keeps its connections pays it once per connection, one that opens a new
// one per request (or per process) pays it each time. TLS, which costs
// one or two more, is not modelled.
type slowListener struct {
	net.Listener
	delay time.Duration
}

func (l *slowListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &slowConn{Conn: c, delay: l.delay}, nil
}

type slowConn struct {
	net.Conn
	delay time.Duration
	once  sync.Once
}

func (c *slowConn) Read(b []byte) (int, error) {
	c.once.Do(func() { time.Sleep(c.delay) })
	return c.Conn.Read(b)
}

func (p *proxy) observe(resp *http.Response) {
	req := resp.Request
	p.mu.Lock()
	defer p.mu.Unlock()
	p.requests++
	p.kinds[requestKind(req.Method, req.URL.Path)]++
	switch {
	case req.Method == http.MethodPut && strings.Contains(req.URL.Path, "/blobs/uploads/") && resp.StatusCode == http.StatusCreated:
		p.uploads[req.URL.Query().Get("digest")]++
	case req.Method == http.MethodPost && req.URL.Query().Get("mount") != "" && resp.StatusCode == http.StatusCreated:
		p.mounts++
	case req.Method == http.MethodPut && strings.Contains(req.URL.Path, "/manifests/") && resp.StatusCode == http.StatusCreated:
		p.manifests++
	}
}

// reset zeroes the counters and returns what they held.
func (p *proxy) reset() counts {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := counts{Recv: p.recv.Swap(0), Sent: p.sent.Swap(0), Mounts: p.mounts, ManifestPuts: p.manifests, Requests: p.requests, DistinctUploads: len(p.uploads), Kinds: p.kinds}
	p.kinds = map[string]int{}
	for _, n := range p.uploads {
		c.BlobUploads += n
	}
	p.uploads = map[string]int{}
	p.mounts, p.manifests, p.requests = 0, 0, 0
	return c
}

func (p *proxy) close() { p.srv.Close() }

type countReader struct {
	r io.ReadCloser
	n *atomic.Int64
}

func (c *countReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n.Add(int64(n))
	return n, err
}

func (c *countReader) Close() error { return c.r.Close() }

// Kinds of request, the columns of the WAN job's table.
const (
	kindPing  = "ping"  // GET or HEAD of /v2/
	kindToken = "token" // the token endpoint
	kindOther = "other" // DELETE, OPTIONS, ...
	// kindRefused counts the requests (of any kind above) refused with 401
	// for want of a token; it is not a column of its own in the totals.
	kindRefused = "401"
)

// requestKinds is the order of the columns.
var requestKinds = []string{kindPing, kindToken, http.MethodHead, http.MethodGet, http.MethodPost, http.MethodPatch, http.MethodPut, kindOther}

// tokenPath is where the proxy serves tokens (its Bearer realm).
const tokenPath = "/token"

// requestKind sorts a request into a column: a ping, a token request, or
// its method.
func requestKind(method, path string) string {
	switch {
	case path == tokenPath:
		return kindToken
	case path == "/v2/" || path == "/v2":
		return kindPing
	}
	switch method {
	case http.MethodHead, http.MethodGet, http.MethodPost, http.MethodPatch, http.MethodPut:
		return method
	}
	return kindOther
}

// countRequest records a request the proxy answered itself (a token or a
// 401), which never reaches observe.
func (p *proxy) countRequest(r *http.Request) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.requests++
	p.kinds[requestKind(r.Method, r.URL.Path)]++
}

// repoOf returns the repository a /v2/ request names ("" for a ping or a
// path it does not know).
func repoOf(path string) string {
	rest, ok := strings.CutPrefix(path, "/v2/")
	if !ok {
		return ""
	}
	best := -1
	for _, m := range []string{"/manifests/", "/blobs/", "/tags/", "/referrers/"} {
		if i := strings.Index(rest, m); i > 0 && (best < 0 || i < best) {
			best = i
		}
	}
	if best < 0 {
		return ""
	}
	return rest[:best]
}

// scopeFor is the scope a request needs: pull to read, pull and push to
// write.
func scopeFor(method, repo string) string {
	if method == http.MethodGet || method == http.MethodHead {
		return "repository:" + repo + ":pull"
	}
	return "repository:" + repo + ":pull,push"
}

// tokenFor encodes the scopes a token grants; the proxy reads them back
// from the token itself, so it keeps no state.
func tokenFor(scopes []string) string {
	return "bench." + base64.RawURLEncoding.EncodeToString([]byte(strings.Join(scopes, " ")))
}

// grants reports whether the Authorization header carries a token of this
// proxy that allows action on repo ("" for a ping: any token will do).
func grants(header, repo, method string) bool {
	tok, ok := strings.CutPrefix(header, "Bearer ")
	if !ok {
		return false
	}
	tok, ok = strings.CutPrefix(tok, "bench.")
	if !ok {
		return false
	}
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return false
	}
	if repo == "" {
		return true
	}
	need := "pull"
	if method != http.MethodGet && method != http.MethodHead {
		need = "push"
	}
	for _, sc := range strings.Fields(string(raw)) {
		parts := strings.Split(sc, ":")
		if len(parts) != 3 || parts[0] != "repository" || parts[1] != repo {
			continue
		}
		for _, a := range strings.Split(parts[2], ",") {
			if a == need || a == "*" {
				return true
			}
		}
	}
	return false
}

// answerAuth serves the token endpoint and refuses a request without a
// token for its scope, as a registry with token authentication does. It
// reports whether it answered.
func (p *proxy) answerAuth(w http.ResponseWriter, r *http.Request) bool {
	if r.URL.Path == tokenPath {
		p.countRequest(r)
		var scopes []string
		for _, s := range r.URL.Query()["scope"] {
			scopes = append(scopes, strings.Fields(s)...)
		}
		t := tokenFor(scopes)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"token": t, "access_token": t, "expires_in": 300, "issued_at": time.Now().UTC().Format(time.RFC3339)})
		return true
	}
	repo := repoOf(r.URL.Path)
	if grants(r.Header.Get("Authorization"), repo, r.Method) {
		return false
	}
	p.countRequest(r)
	p.mu.Lock()
	p.kinds[kindRefused]++
	p.mu.Unlock()
	ch := fmt.Sprintf(`Bearer realm="http://%s%s",service="bench"`, p.Host, tokenPath)
	if repo != "" {
		ch += fmt.Sprintf(`,scope="%s"`, scopeFor(r.Method, repo))
	}
	w.Header().Set("WWW-Authenticate", ch)
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusUnauthorized)
	io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
	return true
}
