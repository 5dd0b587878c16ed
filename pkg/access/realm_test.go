package access

import (
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

type staticKeychain struct{ auth authn.Authenticator }

func (k staticKeychain) Resolve(authn.Resource) (authn.Authenticator, error) { return k.auth, nil }

// tokenSetup is a registry that wants a bearer token, and the token server
// it sends clients to.
type tokenSetup struct {
	registry string // host:port of the registry
	realm    string // host:port of the token server
	issued   atomic.Int32
}

// startTokenSetup serves an in-memory registry on 127.0.0.1 that demands
// a bearer token, with its token server listening on realmIP, at another
// port. The token is issued for user:pass.
func startTokenSetup(t *testing.T, realmIP string) *tokenSetup {
	t.Helper()
	s := &tokenSetup{}
	const token = "tok-realm-test"
	l, err := net.Listen("tcp", net.JoinHostPort(realmIP, "0"))
	if err != nil {
		t.Skipf("cannot listen on %s: %v", realmIP, err)
	}
	tokens := &httptest.Server{Listener: l, Config: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "user" || p != "pass" || r.URL.Query().Get("service") != "realm-test" {
			http.Error(w, "wrong credentials or service", http.StatusUnauthorized)
			return
		}
		s.issued.Add(1)
		fmt.Fprintf(w, `{"token":%q}`, token)
	}), ErrorLog: log.New(io.Discard, "", 0)}}
	tokens.Start()
	t.Cleanup(tokens.Close)
	s.realm = l.Addr().String()

	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="http://%s/token?from=test",service="realm-test"`, s.realm))
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	s.registry = strings.TrimPrefix(front.URL, "http://")
	// The image is pushed around the token check.
	open := httptest.NewServer(reg)
	t.Cleanup(open.Close)
	ref, err := name.ParseReference(strings.TrimPrefix(open.URL, "http://")+"/app:v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestTokenRealm: a token server on another port of the registry's host,
// or on a host the user names, is used; one on any other private address
// is refused with a line saying what to pass.
func TestTokenRealm(t *testing.T) {
	for _, c := range []struct {
		name    string
		realmIP string
		trust   func(s *tokenSetup) Options
		refused bool
	}{
		{"registry's host, other port", "127.0.0.1", func(*tokenSetup) Options { return Options{} }, false},
		{"other loopback address", "127.0.0.2", func(*tokenSetup) Options { return Options{} }, true},
		{"named host", "127.0.0.2", func(*tokenSetup) Options { return Options{TokenRealmHosts: []string{"127.0.0.2"}} }, false},
		{"named host:port", "127.0.0.2", func(s *tokenSetup) Options { return Options{TokenRealmHosts: []string{s.realm}} }, false},
		{"named host, other port", "127.0.0.2", func(*tokenSetup) Options { return Options{TokenRealmHosts: []string{"127.0.0.2:1"}} }, true},
		{"insecure host", "127.0.0.2", func(s *tokenSetup) Options { return Options{InsecureHosts: []string{s.realm}} }, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := startTokenSetup(t, c.realmIP)
			o := c.trust(s)
			o.InsecureHosts = append(o.InsecureHosts, s.registry)
			o.Keychain = staticKeychain{&authn.Basic{Username: "user", Password: "pass"}}
			o.Retry = RetryPolicy{MaxAttempts: 1}
			cl, err := New(o)
			if err != nil {
				t.Fatal(err)
			}
			ref, err := name.ParseReference(s.registry + "/app:v1")
			if err != nil {
				t.Fatal(err)
			}
			_, err = remote.Head(cl.Reference(ref), cl.Remote(t.Context())...)
			err = Explain(err)
			if !c.refused {
				if err != nil {
					t.Fatalf("HEAD with the token server at %s: %v", s.realm, err)
				}
				if s.issued.Load() == 0 {
					t.Errorf("no token was issued")
				}
				return
			}
			var re *RealmError
			want := "pass --token-realm-host 127.0.0.2 if that is the registry's token server"
			if !errors.As(err, &re) || !strings.Contains(err.Error(), want) {
				t.Errorf("got %v, want a *RealmError saying %q", err, want)
			}
			if s.issued.Load() != 0 {
				t.Errorf("the untrusted token server was asked for a token")
			}
		})
	}
}

// TestTokenRealmRelayForged: a registry cannot use the relay's path to
// have ferry send its requests elsewhere: only realms ferry relayed are
// served there.
func TestTokenRealmRelayForged(t *testing.T) {
	var paths []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		paths = append(paths, r.URL.Path)
		w.WriteHeader(http.StatusNotFound)
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	cl, err := New(Options{InsecureHosts: []string{host}, Retry: RetryPolicy{MaxAttempts: 1}})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Transport: cl.Transport()}).Get(srv.URL + realmPath + "1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if len(paths) != 1 || paths[0] != realmPath+"1" {
		t.Errorf("the registry saw %q, want the request left to it", paths)
	}
}
