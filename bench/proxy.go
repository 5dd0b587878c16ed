package main

import (
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
// passes through it.
type proxy struct {
	Host string
	srv  *http.Server

	recv, sent atomic.Int64 // request and response body bytes
	mu         sync.Mutex
	uploads    map[string]int // completed blob uploads by digest
	mounts     int
	manifests  int
	requests   int
}

// counts is a snapshot of what a proxy saw.
type counts struct {
	Recv, Sent      int64
	BlobUploads     int // completed uploads, duplicates included
	DistinctUploads int
	Mounts          int
	ManifestPuts    int
	Requests        int
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
func startProxy(host string) (*proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &proxy{Host: ln.Addr().String(), uploads: map[string]int{}}
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
		if r.Body != nil {
			r.Body = &countReader{r: r.Body, n: &p.recv}
		}
		// The registry builds upload locations from Host: keep the proxy's so
		// every follow-up request passes through it too.
		rp.ServeHTTP(w, r)
	})}
	go p.srv.Serve(ln)
	atExit(p.close)
	return p, nil
}

func (p *proxy) observe(resp *http.Response) {
	req := resp.Request
	p.mu.Lock()
	defer p.mu.Unlock()
	p.requests++
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
	c := counts{Recv: p.recv.Swap(0), Sent: p.sent.Swap(0), Mounts: p.mounts, ManifestPuts: p.manifests, Requests: p.requests, DistinctUploads: len(p.uploads)}
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
