// Package testutil holds helpers shared by ferry's tests: a real registry
// process on loopback (distribution v3 built from the module proxy, or
// Debian's 2.8), an independent judge of manifest digests (a plain HTTP
// GET, and skopeo where installed), and fixture images pushed byte for
// byte as written.
package testutil

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// readyTimeout bounds how long a registry may take to answer GET /v2/.
const readyTimeout = 10 * time.Second

// Registry is a registry process listening on 127.0.0.1.
type Registry struct {
	// Kind is the registry program serving.
	Kind RegistryKind
	// Host is "127.0.0.1:PORT", the registry part of every reference.
	Host string
	// StorageDir is the filesystem driver's root, for tests that look at
	// or damage what the registry stored.
	StorageDir string
	// Scheme is "http", or "https" when TLS was configured.
	Scheme string
	// Transport reaches the registry; with TLS it trusts the configured
	// certificate.
	Transport http.RoundTripper
	// Auth is what the fixture helpers push with: the configured user, or
	// anonymous.
	Auth authn.Authenticator

	proc *process // the running process, for this package's own tests
}

// RegistryOptions turns on the registry features a test needs. The zero
// value is a plain-HTTP registry without authentication.
type RegistryOptions struct {
	// Htpasswd is the path of a bcrypt htpasswd file; when set the registry
	// demands basic auth.
	Htpasswd string
	// Username and Password are the credentials the fixture helpers use
	// against an htpasswd registry; the registry itself reads Htpasswd.
	Username, Password string
	// TLSCert and TLSKey are PEM files; when both are set the registry
	// serves HTTPS. The certificate must name 127.0.0.1 and is trusted as
	// its own CA by Transport.
	TLSCert, TLSKey string
	// Kind picks the registry program; empty is the default: distribution
	// v3, or what FERRY_TEST_REGISTRY names.
	Kind RegistryKind
	// Token turns on distribution's token auth: the registry sends clients
	// to Token.Realm for a bearer token and trusts tokens signed by a
	// certificate of Token.RootCertBundle.
	Token *TokenAuth
}

// TokenAuth configures distribution's "auth: token:" section.
type TokenAuth struct {
	Realm, Service, Issuer string
	// RootCertBundle is a PEM file of the certificates that sign tokens.
	RootCertBundle string
}

// StartRegistry starts a plain-HTTP registry with temporary storage and
// stops it when the test ends.
func StartRegistry(t testing.TB) *Registry {
	t.Helper()
	return StartRegistryWith(t, RegistryOptions{})
}

// StartRegistryWith starts a registry configured by o and stops it when the
// test ends.
func StartRegistryWith(t testing.TB, o RegistryOptions) *Registry {
	t.Helper()
	kind := o.Kind
	if kind == "" {
		kind = defaultKind()
	}
	bin := registryBinary(t, kind)
	tlsOn := o.TLSCert != "" && o.TLSKey != ""
	r := &Registry{
		Kind:       kind,
		StorageDir: t.TempDir(),
		Scheme:     "http",
		Transport:  http.DefaultTransport,
		Auth:       authn.Anonymous,
	}
	if tlsOn {
		tr, err := trustingTransport(o.TLSCert)
		if err != nil {
			t.Fatalf("starting registry: %v", err)
		}
		r.Scheme, r.Transport = "https", tr
	}
	if o.Username != "" {
		r.Auth = &authn.Basic{Username: o.Username, Password: o.Password}
	}
	confDir := t.TempDir()

	// FreePort closes its listener before the registry binds, so another
	// process may take the port in between; a few attempts make that rare
	// race harmless.
	var lastErr error
	for range 3 {
		r.Host = net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
		conf := filepath.Join(confDir, "config.yml")
		if err := os.WriteFile(conf, []byte(registryConfig(r.Host, r.StorageDir, o)), 0o600); err != nil {
			t.Fatalf("writing registry config: %v", err)
		}
		p, err := startProcess(bin, conf)
		if err != nil {
			t.Fatalf("starting %s: %v", bin, err)
		}
		// Registered before waiting, so a failed start is cleaned up too.
		t.Cleanup(p.stop)
		r.proc = p
		err = r.waitReady(t.Context(), p)
		if err == nil {
			return r
		}
		lastErr = err
		if !strings.Contains(p.stderr.String(), "address already in use") {
			break
		}
	}
	t.Fatalf("starting the %s registry (%s): %v", kind, bin, lastErr)
	return nil
}

// Ref returns a reference to repo (which may carry ":tag" or "@digest") on
// this registry.
func (r *Registry) Ref(repo string) string {
	return r.Host + "/" + repo
}

// Stop ends the registry process now, before the test ends, for tests
// that prove a client no longer reaches it; the cleanup then has nothing
// left to do.
func (r *Registry) Stop() {
	r.proc.stop()
}

// RemoteOptions returns the go-containerregistry options that reach this
// registry from within ctx.
func (r *Registry) RemoteOptions(ctx context.Context) []remote.Option {
	return []remote.Option{
		remote.WithContext(ctx),
		remote.WithTransport(r.Transport),
		remote.WithAuth(r.Auth),
	}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// registryConfig renders a configuration both distribution 2.8 and v3
// read (the keys used here did not change). Paths are double-quoted, which
// YAML reads with JSON's escapes.
func registryConfig(host, storage string, o RegistryOptions) string {
	var b strings.Builder
	fmt.Fprintf(&b, `version: 0.1
log:
  level: error
  formatter: text
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %s
  secret: ferry-testutil-secret
`, strconv.Quote(storage), host)
	if o.TLSCert != "" && o.TLSKey != "" {
		fmt.Fprintf(&b, `  tls:
    certificate: %s
    key: %s
`, strconv.Quote(o.TLSCert), strconv.Quote(o.TLSKey))
	}
	if o.Htpasswd != "" {
		fmt.Fprintf(&b, `auth:
  htpasswd:
    realm: ferry-test
    path: %s
`, strconv.Quote(o.Htpasswd))
	}
	if tk := o.Token; tk != nil {
		fmt.Fprintf(&b, `auth:
  token:
    realm: %s
    service: %s
    issuer: %s
    rootcertbundle: %s
`, strconv.Quote(tk.Realm), strconv.Quote(tk.Service), strconv.Quote(tk.Issuer), strconv.Quote(tk.RootCertBundle))
	}
	return b.String()
}

// trustingTransport trusts the PEM certificate in certFile, which for a
// self-signed test certificate is its own CA.
func trustingTransport(certFile string) (http.RoundTripper, error) {
	pem, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("reading tls certificate: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no certificate in %s", certFile)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return tr, nil
}

// waitReady polls GET /v2/ until the registry answers, it exits, or
// readyTimeout passes.
func (r *Registry) waitReady(ctx context.Context, p *process) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	client := &http.Client{Transport: r.Transport, Timeout: time.Second}
	url := r.Scheme + "://" + r.Host + "/v2/"
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			// 401 is the answer of a registry that is up but wants auth.
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				return nil
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("the registry exited before answering GET %s: %v; stderr:\n%s", url, p.err, p.stderr.String())
		case <-ctx.Done():
			return fmt.Errorf("GET %s did not answer within %v (last: %v); stderr:\n%s", url, readyTimeout, err, p.stderr.String())
		case <-tick.C:
		}
	}
}

// process is a running registry and what it wrote to stderr.
type process struct {
	cmd    *exec.Cmd
	stderr *SyncBuffer
	done   chan struct{} // closed once Wait has returned
	err    error         // Wait's result, valid after done
}

func startProcess(bin, conf string) (*process, error) {
	cmd := exec.Command(bin, "serve", conf)
	// REGISTRY_* variables override the config file; a developer's shell
	// must not redirect the test registry.
	cmd.Env = []string{}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "REGISTRY_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	p := &process{cmd: cmd, stderr: &SyncBuffer{}, done: make(chan struct{})}
	cmd.Stdout = p.stderr
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// stop asks the registry to exit and kills it if it has not within a few
// seconds, so no test leaves a process behind.
func (p *process) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		_ = p.cmd.Process.Kill()
	}
	select {
	case <-p.done:
	case <-time.After(3 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// SyncBuffer is a bytes.Buffer safe for one writer goroutine (exec's
// copying, a server's logger) and a reading test.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
