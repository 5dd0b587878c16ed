// Package access builds how ferry talks to registries: credentials from the
// Docker config and credential helpers, verified TLS with extra CAs, and plain
// HTTP only for hosts the user named.
package access

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"github.com/ferry-dev/ferry/pkg/fanout"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Options say how to reach registries.
type Options struct {
	// CACertFiles are PEM files of CAs trusted in addition to the system's.
	CACertFiles []string
	// InsecureHosts may be reached over plain HTTP ("host" or "host:port").
	InsecureHosts []string
	// Keychain supplies credentials; nil means the files of AuthFiles
	// (AuthFile first) and the credential helpers they name.
	Keychain authn.Keychain
	// TokenRealmHosts are hosts ("host" for any port, or "host:port") a
	// registry's token realm may be on besides the registry's own host and
	// the InsecureHosts: go-containerregistry refuses other realms on
	// private or link-local addresses.
	TokenRealmHosts []string
	// AuthFile is a credentials file read before all others (--authfile),
	// in the Docker config's format; it must exist.
	AuthFile string
	// CredentialHelperTimeout bounds one run of a credential helper; 0
	// means DefaultCredentialHelperTimeout (30s).
	CredentialHelperTimeout time.Duration
	// UserAgent names ferry and its version to registries; "" means "ferry".
	UserAgent string
	// Jobs bounds concurrent large transfers (--concurrency); 0 means 8.
	// Small requests run up to fanout.Wide times as many per host: see
	// Limits.
	Jobs int
	// Transport replaces the base HTTP transport (tests); TLS options and
	// timeouts are then not applied. Retries and the HTTP guard still are.
	Transport http.RoundTripper
	// Retry says how transient failures are retried; the zero value means
	// the defaults (6 attempts, backoff from 200ms to 10s, a budget of 2m).
	Retry RetryPolicy
	// DialTimeout bounds opening a connection; 0 means 5s. With retries,
	// an unreachable registry is reported within about half a minute.
	DialTimeout time.Duration
	// TLSHandshakeTimeout bounds the TLS handshake; 0 means 10s.
	TLSHandshakeTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for the answer to a GET or
	// HEAD once it is sent; 0 means 20s. It applies to each try, also with
	// a replaced Transport.
	ResponseHeaderTimeout time.Duration
	// CommitTimeout is ResponseHeaderTimeout for requests that send data
	// (PUT, POST, PATCH): a registry may take minutes to commit a large
	// upload to its storage. 0 means 5m.
	CommitTimeout time.Duration
}

// Default timeouts of Options.
const (
	DefaultDialTimeout           = 5 * time.Second
	DefaultTLSHandshakeTimeout   = 10 * time.Second
	DefaultResponseHeaderTimeout = 20 * time.Second
	DefaultCommitTimeout         = 5 * time.Minute
)

// Client holds what every registry call needs.
type Client struct {
	insecure map[string]bool
	// realmHosts are hosts trusted to run a registry's token server.
	realmHosts map[string]bool
	transport  http.RoundTripper
	keychain   authn.Keychain
	jobs       int
	limits     *limiter
	userAgent  string
	// shared are the per-repository transports of the run.
	shared shared
}

// New checks the options and builds a Client.
func New(o Options) (*Client, error) {
	c := &Client{insecure: map[string]bool{}, realmHosts: map[string]bool{}, keychain: o.Keychain, jobs: o.Jobs, userAgent: cmp.Or(o.UserAgent, "ferry")}
	if o.AuthFile != "" {
		if _, err := os.Stat(o.AuthFile); err != nil {
			return nil, fmt.Errorf("--authfile: %w: give the credentials file podman login or skopeo login wrote", err)
		}
	}
	if o.CredentialHelperTimeout < 0 {
		return nil, fmt.Errorf("--credential-helper-timeout %s: want a positive duration such as 30s", o.CredentialHelperTimeout)
	}
	if c.keychain == nil {
		c.keychain = newFileKeychain(AuthFiles(o.AuthFile), o.CredentialHelperTimeout)
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
	for _, h := range o.TokenRealmHosts {
		h = strings.TrimSpace(h)
		if h == "" || strings.Contains(h, "/") {
			return nil, fmt.Errorf("--token-realm-host %q: want a host or host:port, without scheme or path", h)
		}
		c.realmHosts[h] = true
	}
	base := o.Transport
	if base == nil {
		t, err := newTransport(o, c.Limits().All)
		if err != nil {
			return nil, err
		}
		base = t
	}
	c.limits = newLimiter(c.Limits().All)
	// The guard is outside the retries: a refusal is final, not worth a
	// retry. The realm relay is outermost: what it relays is guarded too.
	// The ping cache answers go-containerregistry's GET /v2/ once per
	// registry for the run.
	c.transport = &realmRelay{trusted: c.trustsRealm, next: &httpGuard{
		next: newPingCache(&retryTransport{
			next:          base,
			policy:        o.Retry.withDefaults(),
			limits:        c.limits,
			headerTimeout: cmp.Or(o.ResponseHeaderTimeout, DefaultResponseHeaderTimeout),
			commitTimeout: cmp.Or(o.CommitTimeout, DefaultCommitTimeout),
		}),
		allowed: c.allowsHTTP,
	}}
	return c, nil
}

func newTransport(o Options, inFlight int) (*http.Transport, error) {
	// Without extra CAs, RootCAs stays nil and Go loads the system roots
	// on the first TLS handshake: a run against plain-HTTP registries
	// does not pay ~30 ms to parse them.
	var pool *x509.CertPool
	if len(o.CACertFiles) > 0 {
		var err error
		if pool, err = x509.SystemCertPool(); err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
	}
	for _, f := range o.CACertFiles {
		pem, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("--registry-ca-cert: %w", err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--registry-ca-cert %s: no PEM certificate found in it", f)
		}
	}
	dialer := &net.Dialer{Timeout: cmp.Or(o.DialTimeout, DefaultDialTimeout), KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		TLSClientConfig:       &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   cmp.Or(o.TLSHandshakeTimeout, DefaultTLSHandshakeTimeout),
		ExpectContinueTimeout: time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConns:          2 * inFlight,
		MaxIdleConnsPerHost:   inFlight,
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

// Jobs is how many large transfers run at once (--concurrency).
func (c *Client) Jobs() int { return c.jobs }

// Limits bound a fan-out of registry work: Jobs large transfers, and
// fanout.Wide times as many requests in all, since across a slow link a
// small request costs a round trip rather than bandwidth. All is also the
// most requests in flight to one host.
func (c *Client) Limits() fanout.Limits { return fanout.For(c.jobs) }

// Transport is the HTTP transport every registry request goes through:
// guarded against plain HTTP, retrying transient failures and slowing down
// on 429, and pinging each registry once (see pingCache). Callers making raw requests must not wrap it in another retry
// (go-containerregistry's transport.NewRetry): that would multiply tries.
func (c *Client) Transport() http.RoundTripper { return c.transport }

// InFlightLimit is the current limit on concurrent requests to host
// ("host[:port]"): Limits().All, until the host answers 429.
func (c *Client) InFlightLimit(host string) int { return c.limits.host(host).Limit() }

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

// Remote returns go-containerregistry options for one call. Its own retries
// are off: Transport retries, with Retry-After and a budget, and more tries
// on top would only multiply the wait.
func (c *Client) Remote(ctx context.Context) []remote.Option {
	return []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(c.keychain),
		remote.WithTransport(c.transport),
		remote.WithJobs(c.jobs),
		remote.WithUserAgent(c.userAgent),
		remote.WithRetryBackoff(remote.Backoff{Duration: time.Millisecond, Factor: 1, Steps: 1}),
		remote.WithRetryPredicate(func(error) bool { return false }),
		remote.WithRetryStatusCodes(),
	}
}

// httpGuard refuses plain HTTP to hosts that were not named insecure:
// go-containerregistry would otherwise fall back to HTTP by itself for
// loopback and private-range addresses, where air-gapped registries live.
type httpGuard struct {
	next    http.RoundTripper
	allowed func(host string) bool
}

func (g *httpGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" && !g.allowed(req.URL.Host) && req.Context().Value(plainRealm{}) == nil {
		return nil, &PlainHTTPError{Host: req.URL.Host}
	}
	return g.next.RoundTrip(req)
}

// PlainHTTPError is a plain-HTTP request ferry refused to send.
type PlainHTTPError struct{ Host string }

func (e *PlainHTTPError) Error() string {
	return fmt.Sprintf("refusing plain HTTP to %s: pass --insecure-registry %s if this registry really has no TLS", e.Host, e.Host)
}

// Explain shortens go-containerregistry's connection errors to the one that
// matters. It tries HTTPS and HTTP side by side for some hosts and reports
// both failures: when the HTTPS side found a plain-HTTP registry, the answer
// is --insecure-registry; when both sides could not connect, saying so once
// is enough.
func Explain(err error) error {
	if err == nil {
		return nil
	}
	var ph *PlainHTTPError
	if errors.As(err, &ph) && strings.Contains(err.Error(), "server gave HTTP response to HTTPS client") {
		return ph
	}
	if tlsErr := untrusted(err); tlsErr != nil {
		return tlsErr
	}
	var re *RetryError
	if errors.As(err, &re) {
		return re
	}
	if ae := authFailure(err); ae != nil {
		return ae
	}
	if re := realmFailure(err); re != nil {
		return re
	}
	return err
}

// AuthError is a registry that refused the credentials ferry sent, or
// access with them (401 or 403). Its message replaces the library's, whose
// details ("[map[Action:pull …]]") tell a user nothing.
type AuthError struct {
	// Registry is the host that refused.
	Registry string
	// Status is 401 or 403.
	Status int
	// Err is the registry's error, a *transport.Error.
	Err error
}

func (e *AuthError) Error() string {
	return fmt.Sprintf("%s refused access (%d %s): log in with '%s', or check the repository name and that this account may pull from (or push to) it",
		e.Registry, e.Status, http.StatusText(e.Status), LoginCommand(e.Registry))
}

func (e *AuthError) Unwrap() error { return e.Err }

// authFailure finds a 401 or 403 from a registry in err.
func authFailure(err error) *AuthError {
	var ae *AuthError
	if errors.As(err, &ae) {
		return ae
	}
	var te *transport.Error
	if !errors.As(err, &te) || (te.StatusCode != http.StatusUnauthorized && te.StatusCode != http.StatusForbidden) {
		return nil
	}
	host := ""
	if te.Request != nil && te.Request.URL != nil {
		host = te.Request.URL.Host
	}
	return &AuthError{Registry: host, Status: te.StatusCode, Err: te}
}

// TLSError is a registry whose certificate ferry could not verify.
type TLSError struct {
	Host string
	Err  error
}

func (e *TLSError) Error() string {
	return fmt.Sprintf("cannot verify the TLS certificate of %s: %v: trust its CA with --registry-ca-cert FILE", e.Host, e.Err)
}

func (e *TLSError) Unwrap() error { return e.Err }

// untrusted finds a certificate verification failure in err, which makes
// the plain-HTTP half of a double error beside the point.
func untrusted(err error) *TLSError {
	var te *TLSError
	if errors.As(err, &te) {
		return te
	}
	var ua x509.UnknownAuthorityError
	var ci x509.CertificateInvalidError
	var hn x509.HostnameError
	var cv *tls.CertificateVerificationError
	var cause error
	switch {
	case errors.As(err, &cv):
		cause = cv.Err
	case errors.As(err, &ua):
		cause = ua
	case errors.As(err, &ci):
		cause = ci
	case errors.As(err, &hn):
		cause = hn
	default:
		return nil
	}
	host := ""
	var ue *url.Error
	if errors.As(err, &ue) {
		if u, perr := url.Parse(ue.URL); perr == nil {
			host = u.Host
		}
	}
	return &TLSError{Host: host, Err: cause}
}

// RedactURL drops the query of a URL in an error: upload and redirect URLs
// can carry signed credentials there.
func RedactURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		if u, perr := url.Parse(ue.URL); perr == nil && u.RawQuery != "" {
			u.RawQuery = ""
			c := *ue
			c.URL = u.String() + "?…"
			return &c
		}
	}
	return err
}

// UserAgent is how ferry names itself to registries.
func (c *Client) UserAgent() string { return c.userAgent }
