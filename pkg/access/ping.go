package access

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
)

// pingCache answers go-containerregistry's ping (GET /v2/ without
// credentials) once per scheme and host for the life of a Client. Every
// transport.NewWithContext pings, and ferry builds one per repository and
// per resolve: over a link 50 ms away, 200 repositories cost 10 s of pings
// that all say the same thing. Only an answer that names the auth scheme
// (200 or 401) is kept; failures are not, so a later ping tries again.
type pingCache struct {
	next http.RoundTripper

	mu    sync.Mutex
	hosts map[string]*pingEntry
}

type pingEntry struct {
	// turn is held while the one real ping is in flight; waiting for it
	// ends with the request's context.
	turn   chan struct{}
	status int
	header http.Header
	proto  string
}

func newPingCache(next http.RoundTripper) *pingCache {
	return &pingCache{next: next, hosts: map[string]*pingEntry{}}
}

func isPing(req *http.Request) bool {
	return req.Method == http.MethodGet && (req.URL.Path == "/v2/" || req.URL.Path == "/v2") &&
		req.URL.RawQuery == "" && req.Header.Get("Authorization") == ""
}

func (p *pingCache) RoundTrip(req *http.Request) (*http.Response, error) {
	if !isPing(req) {
		return p.next.RoundTrip(req)
	}
	key := req.URL.Scheme + "://" + strings.ToLower(req.URL.Host)
	p.mu.Lock()
	e := p.hosts[key]
	if e == nil {
		e = &pingEntry{turn: make(chan struct{}, 1)}
		p.hosts[key] = e
	}
	p.mu.Unlock()

	// Concurrent first pings wait for one answer rather than each asking.
	select {
	case e.turn <- struct{}{}:
	case <-req.Context().Done():
		return nil, req.Context().Err()
	}
	defer func() { <-e.turn }()
	if e.status != 0 {
		return e.response(req), nil
	}
	resp, err := p.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusUnauthorized {
		return resp, nil
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	e.status, e.header, e.proto = resp.StatusCode, resp.Header.Clone(), resp.Proto
	return e.response(req), nil
}

// response is a fresh copy of the kept answer: callers may read and
// close the body and edit the headers.
func (e *pingEntry) response(req *http.Request) *http.Response {
	return &http.Response{
		Status:     fmt.Sprintf("%d %s", e.status, http.StatusText(e.status)),
		StatusCode: e.status,
		Proto:      e.proto,
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     e.header.Clone(),
		Body:       http.NoBody,
		Request:    req,
	}
}
