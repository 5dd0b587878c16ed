package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ferry-dev/ferry/pkg/internal/testutil"
)

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// basicAuth makes registry options that want user with a new random
// password (htpasswd, bcrypt).
func basicAuth(t *testing.T, user string) testutil.RegistryOptions {
	t.Helper()
	pass := "pw-" + randomHex(t, 16)
	htpasswd := filepath.Join(t.TempDir(), "htpasswd")
	writeFile(t, htpasswd, []byte(user+":"+bcryptHash(t, pass, 4)+"\n"))
	return testutil.RegistryOptions{Htpasswd: htpasswd, Username: user, Password: pass}
}

// dockerConfig writes a Docker config.json giving user:pass for each host
// into a new directory and returns the directory, for DOCKER_CONFIG.
func dockerConfig(t *testing.T, user, pass string, hosts ...string) string {
	t.Helper()
	auths := map[string]map[string]string{}
	for _, h := range hosts {
		auths[h] = map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))}
	}
	b, err := json.Marshal(map[string]any{"auths": auths})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "config.json"), b)
	return dir
}

// tokenFront stands in front of a registry the way Docker Hub does: every
// request wants a bearer token, which /token issues for the user's
// password (basic auth).
type tokenFront struct {
	Host   string
	token  string
	issued atomic.Int32 // tokens handed out
	served atomic.Int32 // requests let through with the token
}

func startTokenFront(t *testing.T, target, user, pass string) *tokenFront {
	t.Helper()
	f := &tokenFront{token: "tok-" + randomHex(t, 24)}
	to := &url.URL{Scheme: "http", Host: target}
	rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(to)
		pr.Out.Host = pr.In.Host // upload locations lead back through here
		pr.Out.Header.Del("Authorization")
	}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/token" {
			u, p, ok := r.BasicAuth()
			if !ok || u != user || p != pass {
				http.Error(w, `{"details":"wrong credentials"}`, http.StatusUnauthorized)
				return
			}
			f.issued.Add(1)
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"token":%q,"access_token":%q,"expires_in":300}`, f.token, f.token)
			return
		}
		if r.Header.Get("Authorization") != "Bearer "+f.token {
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="http://%s/token",service="ferry-e2e"`, r.Host))
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
			return
		}
		f.served.Add(1)
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	f.Host = srv.Listener.Addr().String()
	return f
}

// TestCredentialsNeverLeak runs every registry command with -v against
// registries that want a password (htpasswd, basic auth) and a bearer
// token, credentials coming from DOCKER_CONFIG: the commands work, and
// neither the password, nor the base64 auth of config.json, nor the token
// appear in any output, lock or bundle. A wrong password fails without
// being echoed either.
func TestCredentialsNeverLeak(t *testing.T) {
	skipShort(t)
	dir := t.TempDir()
	opts := basicAuth(t, "ferry-e2e")
	user, pass := opts.Username, opts.Password
	src, std := standardSourceWith(t, opts)
	air := testutil.StartRegistryWith(t, opts)
	open := testutil.StartRegistry(t)
	front := startTokenFront(t, open.Host, user, pass)
	ims := images(std, src.Host)[:4] // the indexes and one image are enough
	writeFile(t, filepath.Join(dir, "release.yaml"), podsYAML(ims))
	t.Setenv("DOCKER_CONFIG", dockerConfig(t, user, pass, src.Host, air.Host, front.Host))
	ins := []string{"-v", "--insecure-registry", src.Host, "--insecure-registry", air.Host, "--insecure-registry", front.Host}

	var outputs []testutil.Result
	for _, args := range [][]string{
		{"resolve", "-f", "release.yaml", "--lock-output", "images.lock.yaml", "-o", "pinned.yaml"},
		{"resolve", "-f", "release.yaml"},
		{"pkg", "--lock", "images.lock.yaml", "-o", "bundle.tar"},
		{"verify", "-i", "bundle.tar"},
		{"unpkg", "-i", "bundle.tar", "--repository", air.Host + "/air", "--lock-output", "unpkg.lock.yaml"},
		{"verify", "--lock", "unpkg.lock.yaml"},
		{"relocate", "--lock", "images.lock.yaml", "--repository", front.Host + "/mirror", "--lock-output", "relocated.lock.yaml"},
		{"verify", "--lock", "relocated.lock.yaml"},
		{"relocate", "-f", "release.yaml", "--repository", front.Host + "/again"},
	} {
		outputs = append(outputs, testutil.MustFerry(t, dir, append(args, ins...)...))
	}
	outputs = append(outputs, testutil.MustFerry(t, dir, "inspect", "-i", "bundle.tar", "-v"))
	if front.issued.Load() == 0 || front.served.Load() == 0 {
		t.Fatalf("the token front issued %d tokens and served %d requests with one: bearer auth was not exercised", front.issued.Load(), front.served.Load())
	}
	judge(t, open.Host, "mirror", ims)

	// A wrong password is refused, and not echoed either.
	wrong := "wrong-" + randomHex(t, 16)
	t.Setenv("DOCKER_CONFIG", dockerConfig(t, user, wrong, src.Host, air.Host, front.Host))
	for _, args := range [][]string{
		{"resolve", "-f", "release.yaml"},
		{"relocate", "--lock", "images.lock.yaml", "--repository", front.Host + "/wrong"},
	} {
		r := testutil.RunFerry(t, dir, nil, append(args, ins...)...)
		if r.Code != 1 {
			t.Errorf("ferry %s with a wrong password: exit %d, want 1", args[0], r.Code)
		}
		outputs = append(outputs, r)
	}

	secrets := map[string]string{
		"password":           pass,
		"base64 auth":        base64.StdEncoding.EncodeToString([]byte(user + ":" + pass)),
		"bearer token":       front.token,
		"wrong password":     wrong,
		"wrong base64 auth":  base64.StdEncoding.EncodeToString([]byte(user + ":" + wrong)),
		"base64 of the pass": base64.StdEncoding.EncodeToString([]byte(pass)),
	}
	places := map[string][]byte{}
	for i, r := range outputs {
		places[fmt.Sprintf("stdout of run %d", i)] = []byte(r.Stdout)
		places[fmt.Sprintf("stderr of run %d", i)] = []byte(r.Stderr)
	}
	for _, f := range []string{"images.lock.yaml", "pinned.yaml", "bundle.tar", "unpkg.lock.yaml", "relocated.lock.yaml"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		places[f] = b
	}
	for what, secret := range secrets {
		for where, b := range places {
			if bytes.Contains(b, []byte(secret)) {
				t.Errorf("the %s appears in %s", what, where)
			}
		}
	}
}

// TestTLS has a registry serve a certificate of a private CA: refused by
// default with one line suggesting --registry-ca-cert, accepted with
// --registry-ca-cert ca.pem, digests intact.
func TestTLS(t *testing.T) {
	skipShort(t)
	t.Parallel()
	dir := t.TempDir()
	ca, cert, key := testutil.WriteTLS(t, t.TempDir())
	reg, std := standardSourceWith(t, testutil.RegistryOptions{TLSCert: cert, TLSKey: key})
	plain := testutil.StartRegistry(t)
	ims := images(std, reg.Host)[:4]
	writeLock(t, dir, "images.lock.yaml", ims)
	writeFile(t, filepath.Join(dir, "release.yaml"), podsYAML(ims))
	with := []string{"--registry-ca-cert", ca, "--insecure-registry", plain.Host}
	cmds := [][]string{
		{"resolve", "-f", "release.yaml", "--lock-output", "resolved.lock.yaml"},
		{"pkg", "--lock", "images.lock.yaml", "-o", "bundle.tar"},
		{"relocate", "--lock", "images.lock.yaml", "--repository", plain.Host + "/copy", "--lock-output", "copy.lock.yaml"},
		{"unpkg", "-i", "bundle.tar", "--repository", reg.Host + "/air", "--lock-output", "air.lock.yaml"},
		{"verify", "--lock", "air.lock.yaml"},
	}
	for _, args := range cmds {
		testutil.MustFerry(t, dir, append(args, with...)...)
	}
	judge(t, reg.Host, "air", ims)
	judge(t, plain.Host, "copy", ims)

	for _, args := range cmds {
		if args[0] == "pkg" {
			// A finished bundle of this lock is recognised without a
			// registry; a new one must be fetched.
			args = []string{"pkg", "--lock", "images.lock.yaml", "-o", "another.tar"}
		}
		r := testutil.RunFerry(t, dir, nil, append(args, "--insecure-registry", plain.Host)...)
		if r.Code != 1 || len(r.Lines()) != 1 || !strings.Contains(r.Stderr, reg.Host) || !strings.Contains(r.Stderr, "--registry-ca-cert") {
			t.Errorf("ferry %s without the CA: exit %d, stderr %q; want 1 and one line naming %s and suggesting --registry-ca-cert", args[0], r.Code, r.Stderr, reg.Host)
		}
	}
}

// TestPlainHTTPNeedsInsecureRegistry has a registry on 127.0.0.1 speak
// plain HTTP: every command refuses it, with one line suggesting
// --insecure-registry HOST:PORT, and sends it no plain-HTTP request at all,
// unless the host is named.
func TestPlainHTTPNeedsInsecureRegistry(t *testing.T) {
	skipShort(t)
	t.Parallel()
	dir := t.TempDir()
	reg, std := standardSource(t)
	proxy := testutil.StartFaultProxy(t, reg.Host) // counts what reaches it
	ims := images(std, proxy.Host)[:4]
	writeLock(t, dir, "images.lock.yaml", ims)
	writeFile(t, filepath.Join(dir, "release.yaml"), podsYAML(ims))
	// A bundle and a relocated lock to push and check, made with the flag.
	testutil.MustFerry(t, dir, "pkg", "--lock", "images.lock.yaml", "-o", "bundle.tar", "--insecure-registry", proxy.Host, "-q")
	testutil.MustFerry(t, dir, "relocate", "--lock", "images.lock.yaml", "--repository", proxy.Host+"/copy", "--lock-output", "copy.lock.yaml", "--insecure-registry", proxy.Host, "-q")
	proxy.ResetStats()

	for _, args := range [][]string{
		{"resolve", "-f", "release.yaml"},
		{"pkg", "--lock", "images.lock.yaml", "-o", "again.tar"},
		{"relocate", "--lock", "images.lock.yaml", "--repository", proxy.Host + "/other"},
		{"unpkg", "-i", "bundle.tar", "--repository", proxy.Host + "/air"},
		{"verify", "--lock", "copy.lock.yaml"},
	} {
		r := testutil.RunFerry(t, dir, nil, args...)
		if r.Code != 1 || len(r.Lines()) != 1 || !strings.Contains(r.Stderr, "--insecure-registry "+proxy.Host) {
			t.Errorf("ferry %s over plain HTTP without the flag: exit %d, stderr %q; want 1 and one line suggesting --insecure-registry %s", args[0], r.Code, r.Stderr, proxy.Host)
		}
		if n := len(proxy.Seen()); n != 0 {
			t.Errorf("ferry %s sent %d plain-HTTP requests to a host not named insecure, first %v", args[0], n, proxy.Seen()[0])
			proxy.ResetStats()
		}
	}
	if exists(t, filepath.Join(dir, "again.tar")) {
		t.Error("pkg wrote a bundle from a refused registry")
	}
	testutil.MustFerry(t, dir, "resolve", "-f", "release.yaml", "--insecure-registry", proxy.Host)
}
