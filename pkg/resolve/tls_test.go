package resolve

import (
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/pkg/access"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TLS is verified: a registry whose certificate no trusted CA signed is
// refused, and trusted once --registry-ca-cert names its CA.
func TestResolveVerifiesTLS(t *testing.T) {
	srv := httptest.NewTLSServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(u.Host + "/team/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithTransport(srv.Client().Transport)); err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	in := []Input{{Ref: mustParse(t, u.Host+"/team/app:v1")}}

	c, err := access.New(access.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Resolve(t.Context(), c, in, Options{})
	var te *access.TLSError
	if err == nil || !errors.As(err, &te) || !strings.Contains(err.Error(), "--registry-ca-cert") {
		t.Fatalf("resolving from a registry with an unknown CA: %v, want an *access.TLSError suggesting --registry-ca-cert", err)
	}

	ca := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(ca, pemBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	c, err = access.New(access.Options{CACertFiles: []string{ca}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := Resolve(t.Context(), c, in, Options{})
	if err != nil {
		t.Fatalf("with --registry-ca-cert: %v", err)
	}
	if len(got.Images) != 1 || got.Images[0].Digest != want.String() {
		t.Errorf("resolved %+v, want %s", got.Images, want)
	}
}
