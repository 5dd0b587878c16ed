package access

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// realmPath is where, on a registry's own host, ferry serves the token
// realms it relayed. The path never reaches the registry.
const realmPath = "/.ferry-token-realm/"

// realmRelay lets go-containerregistry get tokens from a token server on a
// private address that the user trusts. go-containerregistry (0.22) refuses
// a realm on a private or loopback IP unless it is the registry's own
// host:port, to stop a hostile registry from sending credentials to an
// internal service; it has no option to trust more. On-prem registries
// often have their token server on another port or host of the same
// network. For a trusted realm, the relay rewrites the challenge to point at
// a path on the registry's own host:port, which the library accepts, and
// sends requests to that path on to the real realm. Realms it does not
// trust are left as they are, for the library to refuse.
type realmRelay struct {
	next http.RoundTripper
	// trusted reports whether a realm on realmHost ("host[:port]") may
	// receive the credentials meant for registry ("host[:port]").
	trusted func(registry, realmHost string) bool

	mu     sync.Mutex
	relays map[string]relayed // by id
	ids    map[string]string  // by registry host and realm
}

// plainRealm marks a relayed token request the HTTP guard lets through
// over plain HTTP: its registry was named with --insecure-registry.
type plainRealm struct{}

// relayed is a realm the relay stands in for, on one registry's host.
type relayed struct {
	registry string
	realm    *url.URL
}

var realmParam = regexp.MustCompile(`(?i)\brealm="([^"]*)"`)

func (t *realmRelay) RoundTrip(req *http.Request) (*http.Response, error) {
	if id, ok := strings.CutPrefix(req.URL.Path, realmPath); ok {
		if r, ok := t.lookup(id); ok && r.registry == req.URL.Host {
			out := relayRequest(req, r.realm)
			if req.URL.Scheme == "http" {
				// A registry reached over plain HTTP may have its token
				// server so too, as go-containerregistry allows.
				out = out.WithContext(context.WithValue(out.Context(), plainRealm{}, true))
			}
			return t.next.RoundTrip(out)
		}
	}
	resp, err := t.next.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	values := resp.Header.Values("WWW-Authenticate")
	for i, v := range values {
		values[i] = realmParam.ReplaceAllStringFunc(v, func(m string) string {
			realm := realmParam.FindStringSubmatch(m)[1]
			if relay := t.relay(req.URL, realm); relay != "" {
				return `realm="` + relay + `"`
			}
			return m
		})
	}
	return resp, nil
}

// relay returns the URL on the registry's host that stands in for realm,
// or "" when realm needs no relay (it is on the registry's host:port) or
// is not trusted.
func (t *realmRelay) relay(registry *url.URL, realm string) string {
	u, err := url.Parse(realm)
	if err != nil || u.Host == "" || u.Host == registry.Host || (u.Scheme != "https" && u.Scheme != "http") {
		return ""
	}
	if !t.trusted(registry.Host, u.Host) {
		return ""
	}
	key := registry.Host + " " + realm
	t.mu.Lock()
	defer t.mu.Unlock()
	id, ok := t.ids[key]
	if !ok {
		if t.ids == nil {
			t.ids, t.relays = map[string]string{}, map[string]relayed{}
		}
		id = strconv.Itoa(len(t.ids) + 1)
		t.ids[key] = id
		t.relays[id] = relayed{registry: registry.Host, realm: u}
	}
	return (&url.URL{Scheme: registry.Scheme, Host: registry.Host, Path: realmPath + id}).String()
}

func (t *realmRelay) lookup(id string) (relayed, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r, ok := t.relays[id]
	return r, ok
}

// relayRequest is req sent to realm: the realm's own query parameters and
// those the library added (service, scope).
func relayRequest(req *http.Request, realm *url.URL) *http.Request {
	out := req.Clone(req.Context())
	u := *realm
	q := u.Query()
	for k, vs := range req.URL.Query() {
		q[k] = append(q[k], vs...)
	}
	u.RawQuery = q.Encode()
	out.URL = &u
	out.Host = u.Host
	return out
}

// trustsRealm reports whether a token realm on realmHost may receive the
// credentials of registry: on the registry's own host (any port), or on a
// host the user named with --token-realm-host or --insecure-registry.
func (c *Client) trustsRealm(registry, realmHost string) bool {
	if hostOnly(registry) == hostOnly(realmHost) {
		return true
	}
	return c.realmHosts[realmHost] || c.realmHosts[hostOnly(realmHost)] || c.allowsHTTP(realmHost)
}

// hostOnly drops the port of "host[:port]".
func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return strings.Trim(hostport, "[]")
}

// RealmError is a token realm go-containerregistry refused: on a private
// or link-local address that is neither the registry's host nor one the
// user trusts.
type RealmError struct {
	// Host is the realm's host.
	Host string
	Err  error
}

func (e *RealmError) Error() string {
	return fmt.Sprintf("the registry sends ferry for a token to %s, a private or link-local address ferry does not send credentials to unless told: pass --token-realm-host %s if that is the registry's token server", e.Host, e.Host)
}

func (e *RealmError) Unwrap() error { return e.Err }

var refusedRealm = regexp.MustCompile(`invalid realm in www-authenticate: realm host "([^"]*)" is a private or link-local address`)

// realmFailure finds go-containerregistry's refusal of a realm in err.
func realmFailure(err error) *RealmError {
	var re *RealmError
	if errors.As(err, &re) {
		return re
	}
	if m := refusedRealm.FindStringSubmatch(err.Error()); m != nil {
		return &RealmError{Host: m[1], Err: err}
	}
	return nil
}
