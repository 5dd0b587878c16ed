package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/pkg/internal/testutil"
)

// tokenServer issues the JSON web tokens distribution's token auth
// trusts, for one user's password: signed with an ECDSA key of a
// certificate the registry has in its rootcertbundle, granting whatever
// scopes are asked for.
type tokenServer struct {
	// Host is where it listens; Realm its token URL.
	Host, Realm string
	// RootCerts is the PEM file of its certificate, for the registry.
	RootCerts string
	issued    atomic.Int32

	key  *ecdsa.PrivateKey
	cert []byte // DER
}

const (
	tokenService = "ferry-e2e-registry"
	tokenIssuer  = "ferry-e2e-token-server"
)

// startTokenServer listens on ip (any free port).
func startTokenServer(t *testing.T, ip, user, pass string) *tokenServer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: tokenIssuer},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	s := &tokenServer{key: key, cert: der, RootCerts: filepath.Join(t.TempDir(), "token-root.pem")}
	writeFile(t, s.RootCerts, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))

	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Skipf("cannot listen on %s: %v", ip, err)
	}
	srv := &httptest.Server{Listener: l, Config: &http.Server{ErrorLog: log.New(io.Discard, "", 0), Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != user || p != pass {
			http.Error(w, `{"details":"wrong credentials"}`, http.StatusUnauthorized)
			return
		}
		tok, err := s.sign(user, r.URL.Query()["scope"])
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		s.issued.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"token":%q,"expires_in":300}`, tok)
	})}}
	srv.Start()
	t.Cleanup(srv.Close)
	s.Host = l.Addr().String()
	s.Realm = "http://" + s.Host + "/token"
	return s
}

// sign makes a token granting every action asked for in scopes
// ("repository:NAME:pull,push").
func (s *tokenServer) sign(user string, scopes []string) (string, error) {
	type grant struct {
		Type    string   `json:"type"`
		Name    string   `json:"name"`
		Actions []string `json:"actions"`
	}
	access := []grant{}
	for _, sc := range scopes {
		for _, one := range strings.Fields(sc) {
			parts := strings.Split(one, ":")
			if len(parts) < 3 {
				continue
			}
			access = append(access, grant{Type: parts[0], Name: strings.Join(parts[1:len(parts)-1], ":"), Actions: strings.Split(parts[len(parts)-1], ",")})
		}
	}
	now := time.Now()
	header, err := json.Marshal(map[string]any{"typ": "JWT", "alg": "ES256", "x5c": []string{base64.StdEncoding.EncodeToString(s.cert)}})
	if err != nil {
		return "", err
	}
	claims, err := json.Marshal(map[string]any{
		"iss": tokenIssuer, "sub": user, "aud": tokenService,
		"exp": now.Add(5 * time.Minute).Unix(), "nbf": now.Add(-time.Minute).Unix(), "iat": now.Unix(),
		"jti": fmt.Sprintf("%d", now.UnixNano()), "access": access,
	})
	if err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding
	input := enc.EncodeToString(header) + "." + enc.EncodeToString(claims)
	sum := sha256.Sum256([]byte(input))
	r, sg, err := ecdsa.Sign(rand.Reader, s.key, sum[:])
	if err != nil {
		return "", err
	}
	sig := make([]byte, 64) // JWS ES256: r and s, 32 bytes each
	r.FillBytes(sig[:32])
	sg.FillBytes(sig[32:])
	return input + "." + enc.EncodeToString(sig), nil
}

// tokenRegistry starts a registry with distribution's token auth whose
// realm is ts.
func tokenRegistry(t *testing.T, ts *tokenServer) *testutil.Registry {
	t.Helper()
	return testutil.StartRegistryWith(t, testutil.RegistryOptions{Token: &testutil.TokenAuth{
		Realm: ts.Realm, Service: tokenService, Issuer: tokenIssuer, RootCertBundle: ts.RootCerts,
	}})
}

// TestTokenRealmPrivate: registries with distribution's token auth whose
// token server is on a loopback address, as on-prem registries have it on
// their network. A token server on the registry's own host (another port)
// is used; one on another address is refused with one line naming
// --token-realm-host, and used once that names it.
func TestTokenRealmPrivate(t *testing.T) {
	skipShort(t)
	dir := t.TempDir()
	src, std := standardSource(t)
	ims := images(std, src.Host)[:4]
	lockPath := writeLock(t, dir, "images.lock.yaml", ims)
	user, pass := "ferry-token", "pw-"+randomHex(t, 16)

	sameHost := startTokenServer(t, "127.0.0.1", user, pass)
	other := startTokenServer(t, "127.0.0.2", user, pass)
	near := tokenRegistry(t, sameHost)
	far := tokenRegistry(t, other)
	t.Setenv("DOCKER_CONFIG", dockerConfig(t, user, pass, near.Host, far.Host))
	ins := []string{"--insecure-registry", src.Host, "--insecure-registry", near.Host, "--insecure-registry", far.Host}

	t.Run("registry's host, other port", func(t *testing.T) {
		testutil.MustFerry(t, dir, append([]string{"relocate", "--lock", lockPath, "--repository", near.Host + "/mirror", "--lock-output", "near.lock.yaml"}, ins...)...)
		testutil.MustFerry(t, dir, append([]string{"verify", "--lock", "near.lock.yaml"}, ins...)...)
		if b, m, mf, tags := readState(t, near.StorageDir).missing("mirror", ims); b+m+mf+tags != 0 {
			t.Errorf("the registry lacks %d blobs, %d links, %d manifests and %d tags", b, m, mf, tags)
		}
		if sameHost.issued.Load() == 0 {
			t.Errorf("the token server issued no token")
		}
	})

	t.Run("other address refused", func(t *testing.T) {
		r := testutil.RunFerry(t, dir, nil, append([]string{"relocate", "--lock", lockPath, "--repository", far.Host + "/mirror"}, ins...)...)
		lines := r.Lines()
		want := "pass --token-realm-host 127.0.0.2 if that is the registry's token server"
		if r.Code != 1 || len(lines) != 1 || !strings.Contains(lines[0], want) || !strings.Contains(lines[0], far.Host) {
			t.Errorf("exit %d, stderr:\n%s\nwant exit 1 and one line naming %s and saying %q", r.Code, r.Stderr, far.Host, want)
		}
		if other.issued.Load() != 0 {
			t.Errorf("the token server nobody trusted was asked for %d tokens", other.issued.Load())
		}
	})

	t.Run("other address named", func(t *testing.T) {
		testutil.MustFerry(t, dir, append([]string{"relocate", "--lock", lockPath, "--repository", far.Host + "/mirror", "--lock-output", "far.lock.yaml", "--token-realm-host", "127.0.0.2"}, ins...)...)
		testutil.MustFerry(t, dir, append([]string{"verify", "--lock", "far.lock.yaml", "--token-realm-host", "127.0.0.2"}, ins...)...)
		if b, m, mf, tags := readState(t, far.StorageDir).missing("mirror", ims); b+m+mf+tags != 0 {
			t.Errorf("the registry lacks %d blobs, %d links, %d manifests and %d tags", b, m, mf, tags)
		}
	})
}
