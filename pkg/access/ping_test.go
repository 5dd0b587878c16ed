package access

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// TestPingOncePerRegistry builds a transport per repository, as a run over
// many repositories does, and checks the registry was pinged once, while
// every transport still authenticates with what the ping said.
func TestPingOncePerRegistry(t *testing.T) {
	for _, tc := range []struct {
		name      string
		challenge bool // answer 401 with a Basic challenge
	}{
		{"anonymous", false},
		{"basic auth", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var pings, authed, plain atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/v2/" {
					pings.Add(1)
				}
				if r.Header.Get("Authorization") != "" {
					authed.Add(1)
				} else {
					plain.Add(1)
				}
				if tc.challenge && r.Header.Get("Authorization") == "" {
					w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
					w.WriteHeader(http.StatusUnauthorized)
					return
				}
				w.WriteHeader(http.StatusOK)
			}))
			defer srv.Close()
			host := strings.TrimPrefix(srv.URL, "http://")
			c, err := New(Options{InsecureHosts: []string{host}})
			if err != nil {
				t.Fatal(err)
			}
			auth := authn.FromConfig(authn.AuthConfig{Username: "u", Password: "p"})
			const repos = 6
			var wg sync.WaitGroup
			for i := range repos {
				wg.Go(func() {
					r, err := name.NewRepository(fmt.Sprintf("%s/team/app%d", host, i))
					if err != nil {
						t.Error(err)
						return
					}
					repo := c.Repository(r)
					tr, err := transport.NewWithContext(t.Context(), repo.Registry, auth, c.Transport(), []string{repo.Scope(transport.PullScope)})
					if err != nil {
						t.Error(err)
						return
					}
					req, _ := http.NewRequestWithContext(t.Context(), http.MethodHead, srv.URL+"/v2/"+repo.RepositoryStr()+"/manifests/v1", nil)
					resp, err := (&http.Client{Transport: tr}).Do(req)
					if err != nil {
						t.Error(err)
						return
					}
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						t.Errorf("HEAD through the transport: %d", resp.StatusCode)
					}
				})
			}
			wg.Wait()
			if got := pings.Load(); got != 1 {
				t.Errorf("the registry was pinged %d times for %d transports, want once", got, repos)
			}
			if tc.challenge && authed.Load() != repos {
				t.Errorf("%d requests carried credentials, want the %d HEADs", authed.Load(), repos)
			}
		})
	}
}

// TestPingFailureNotKept checks that a ping answered with an error status
// is not remembered: the next transport asks again.
func TestPingFailureNotKept(t *testing.T) {
	var pings atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if pings.Add(1) == 1 {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	c, err := New(Options{InsecureHosts: []string{host}})
	if err != nil {
		t.Fatal(err)
	}
	r, err := name.NewRepository(host + "/app")
	if err != nil {
		t.Fatal(err)
	}
	reg := c.Repository(r).Registry
	if _, err := transport.NewWithContext(t.Context(), reg, authn.Anonymous, c.Transport(), nil); err == nil {
		t.Fatal("first ping answered 403, want an error")
	}
	for range 2 {
		if _, err := transport.NewWithContext(t.Context(), reg, authn.Anonymous, c.Transport(), nil); err != nil {
			t.Fatal(err)
		}
	}
	if got := pings.Load(); got != 2 {
		t.Errorf("%d pings, want 2: the failed one, then one kept", got)
	}
}
