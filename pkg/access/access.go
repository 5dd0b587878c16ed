// Package access builds how ferry talks to registries: credentials from the
// Docker config and credential helpers, verified TLS with extra CAs, and plain
// HTTP only for hosts the user named.
package access

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Options say how to reach registries.
type Options struct {
	// CACertFiles are PEM files of CAs trusted in addition to the system's.
	CACertFiles []string
	// InsecureHosts may be reached over plain HTTP ("host" or "host:port").
	InsecureHosts []string
	// Keychain supplies credentials; nil means the Docker config and its
	// credential helpers.
	Keychain authn.Keychain
	// Jobs bounds concurrent requests; 0 means 8.
	Jobs int
	// Transport replaces the base HTTP transport (tests); TLS options are
	// then not applied.
	Transport http.RoundTripper
}

// Client holds what every registry call needs.
type Client struct {
	insecure  map[string]bool
	transport http.RoundTripper
	keychain  authn.Keychain
	jobs      int
}

// New checks the options and builds a Client.
func New(o Options) (*Client, error) {
	c := &Client{insecure: map[string]bool{}, keychain: o.Keychain, jobs: o.Jobs}
	if c.keychain == nil {
		c.keychain = authn.DefaultKeychain
	}
	if c.jobs <= 0 {
		c.jobs = 8
	}
	for _, h := range o.InsecureHosts {
		h = strings.TrimSpace(h)
		if h == "" || strings.Contains(h, "/") {
			return nil, fmt.Errorf("--insecure-registry %q: want a host or host:port, without scheme or path", h)
		}
		c.insecure[h] = true
	}
	base := o.Transport
	if base == nil {
		t, err := newTransport(o.CACertFiles, c.jobs)
		if err != nil {
			return nil, err
		}
		base = t
	}
	c.transport = &httpGuard{next: base, allowed: c.allowsHTTP}
	return c, nil
}

func newTransport(caFiles []string, jobs int) (*http.Transport, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	for _, f := range caFiles {
		pem, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("--registry-ca-cert: %w", err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--registry-ca-cert %s: no PEM certificate found in it", f)
		}
	}
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		TLSClientConfig:       &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
		ExpectContinueTimeout: time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConns:          4 * jobs,
		MaxIdleConnsPerHost:   2 * jobs,
		ForceAttemptHTTP2:     true,
	}, nil
}

// allowsHTTP reports whether host (as in a URL, "host[:port]") was named
// with --insecure-registry, with or without its port.
func (c *Client) allowsHTTP(host string) bool {
	if c.insecure[host] {
		return true
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		return c.insecure[h]
	}
	return false
}

// Insecure reports whether plain HTTP is allowed for the registry.
func (c *Client) Insecure(registry string) bool { return c.allowsHTTP(registry) }

// Jobs is the concurrency limit.
func (c *Client) Jobs() int { return c.jobs }

// Transport is the guarded HTTP transport, for callers making raw requests.
func (c *Client) Transport() http.RoundTripper { return c.transport }

// Keychain is the credential source.
func (c *Client) Keychain() authn.Keychain { return c.keychain }

// Repository returns repo marked insecure when its host was named with
// --insecure-registry, so that go-containerregistry may fall back to HTTP.
func (c *Client) Repository(repo name.Repository) name.Repository {
	if !c.allowsHTTP(repo.RegistryStr()) {
		return repo
	}
	r, err := name.NewRepository(repo.Name(), name.Insecure)
	if err != nil {
		return repo
	}
	return r
}

// Reference is Repository for a tag or digest reference.
func (c *Client) Reference(ref name.Reference) name.Reference {
	repo := c.Repository(ref.Context())
	switch r := ref.(type) {
	case name.Digest:
		return repo.Digest(r.DigestStr())
	case name.Tag:
		return repo.Tag(r.TagStr())
	}
	return ref
}

// Remote returns go-containerregistry options for one call.
func (c *Client) Remote(ctx context.Context) []remote.Option {
	return []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(c.keychain),
		remote.WithTransport(c.transport),
		remote.WithJobs(c.jobs),
		remote.WithUserAgent("ferry/" + userAgentVersion),
	}
}

var userAgentVersion = "dev"

// SetVersion records ferry's version for the User-Agent.
func SetVersion(v string) { userAgentVersion = v }

// httpGuard refuses plain HTTP to hosts that were not named insecure:
// go-containerregistry would otherwise fall back to HTTP by itself for
// loopback and private-range addresses, where air-gapped registries live.
type httpGuard struct {
	next    http.RoundTripper
	allowed func(host string) bool
}

func (g *httpGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" && !g.allowed(req.URL.Host) {
		return nil, fmt.Errorf("refusing plain HTTP to %s: pass --insecure-registry %s if this registry really has no TLS", req.URL.Host, req.URL.Host)
	}
	return g.next.RoundTrip(req)
}
