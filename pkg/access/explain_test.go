package access

import (
	"context"
	"errors"
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
