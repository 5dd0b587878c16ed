package access

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// ping connects the way every go-containerregistry call does: HTTPS, and
// for a loopback host also HTTP, side by side.
func ping(t *testing.T, c *Client, host string) error {
	t.Helper()
	reg, err := name.NewRegistry(host)
	if err != nil {
		t.Fatal(err)
	}
	_, err = transport.NewWithContext(context.Background(), reg, authn.Anonymous, c.Transport(), []string{"repository:x:pull"})
	if err == nil {
		t.Fatal("ping succeeded, want a failure")
	}
	return err
}

func TestExplain(t *testing.T) {
	ok := func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }
	tlsSrv := httptest.NewUnstartedServer(http.HandlerFunc(ok))
	tlsSrv.Config.ErrorLog = log.New(io.Discard, "", 0)
	tlsSrv.StartTLS()
	defer tlsSrv.Close()
	plainSrv := httptest.NewServer(http.HandlerFunc(ok))
	defer plainSrv.Close()
	tlsHost := strings.TrimPrefix(tlsSrv.URL, "https://")
	plainHost := strings.TrimPrefix(plainSrv.URL, "http://")

	c, err := New(Options{Retry: RetryPolicy{MaxAttempts: 1}})
	if err != nil {
		t.Fatal(err)
	}
	err = Explain(ping(t, c, tlsHost))
	var te *TLSError
	if !errors.As(err, &te) || te.Host != tlsHost {
		t.Errorf("untrusted certificate: got %v, want a *TLSError for %s", err, tlsHost)
	}
	if strings.Contains(err.Error(), "--insecure-registry") {
		t.Errorf("untrusted certificate: %q also suggests plain HTTP", err)
	}

	err = Explain(ping(t, c, plainHost))
	var ph *PlainHTTPError
	if !errors.As(err, &ph) || err.Error() != (&PlainHTTPError{Host: plainHost}).Error() {
		t.Errorf("plain-HTTP registry: got %v, want only the --insecure-registry advice", err)
	}
}

func TestRedactURL(t *testing.T) {
	if RedactURL(nil) != nil {
		t.Error("RedactURL(nil) is not nil")
	}
	err := &url.Error{Op: "Put", URL: "https://r.io/v2/x/blobs/uploads/1?_state=SECRET&X-Amz-Signature=abc", Err: errors.New("boom")}
	got := RedactURL(err).Error()
	if strings.Contains(got, "SECRET") || strings.Contains(got, "abc") || !strings.Contains(got, "https://r.io/v2/x/blobs/uploads/1") {
		t.Errorf("RedactURL = %q", got)
	}
}

// TestExplainAuth: a 401 or 403 becomes one line naming the registry and
// the login command, without the library's details.
func TestExplainAuth(t *testing.T) {
	for _, status := range []int{http.StatusUnauthorized, http.StatusForbidden} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":[{"Type":"repository","Name":"x","Action":"pull"}]}]}`)
		}))
		host := strings.TrimPrefix(srv.URL, "http://")
		resp, err := http.Get(srv.URL + "/v2/x/manifests/latest")
		if err != nil {
			t.Fatal(err)
		}
		err = Explain(fmt.Errorf("checking x: %w", transport.CheckError(resp, http.StatusOK)))
		resp.Body.Close()
		srv.Close()
		var ae *AuthError
		want := fmt.Sprintf("%s refused access (%d %s): log in with 'docker login %s', or check", host, status, http.StatusText(status), host)
		if !errors.As(err, &ae) || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("status %d: got %v, want an *AuthError starting %q", status, err, want)
		}
		if strings.Contains(err.Error(), "map[") || strings.Contains(err.Error(), "UNAUTHORIZED") {
			t.Errorf("status %d: the library's details show: %v", status, err)
		}
	}
	if ae := authFailure(&transport.Error{StatusCode: http.StatusNotFound}); ae != nil {
		t.Errorf("404 taken for an auth failure: %v", ae)
	}
}
