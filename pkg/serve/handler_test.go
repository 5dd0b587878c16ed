package serve

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/pkg/destination"
	"github.com/ferry-dev/ferry/pkg/internal/testutil"
	"github.com/google/go-cmp/cmp"
)

type answer struct {
	status int
	header http.Header
	body   []byte
}

func do(t *testing.T, method, url string, header ...string) answer {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{resp.StatusCode, resp.Header, b}
}

// errorCode is the first code of a distribution error body.
func errorCode(t *testing.T, b []byte) string {
	t.Helper()
	var e struct {
		Errors []struct{ Code, Message string }
	}
	if err := json.Unmarshal(b, &e); err != nil || len(e.Errors) == 0 {
		t.Fatalf("not a distribution error body: %q", b)
	}
	return e.Errors[0].Code
}

func TestPull(t *testing.T) {
	f := writeFixture(t)
	_, srv := serveFixture(t, f, Options{})
	tests := []struct {
		name      string
		method    string
		path      string
		header    []string
		status    int
		body      []byte
		mediaType string
		digest    string
	}{
		{name: "ping", method: "GET", path: "/v2/", status: 200, body: []byte("{}")},
		{name: "index by tag", method: "GET", path: "/v2/app/web/manifests/v1", status: 200, body: f.web.data, mediaType: ociIndex, digest: f.web.digest},
		{name: "index by digest", method: "GET", path: "/v2/app/web/manifests/" + f.web.digest, status: 200, body: f.web.data, mediaType: ociIndex, digest: f.web.digest},
		{name: "child by digest", method: "GET", path: "/v2/app/web/manifests/" + f.webARM64.digest, status: 200, body: f.webARM64.data, mediaType: ociManifest, digest: f.webARM64.digest},
		{name: "head manifest", method: "HEAD", path: "/v2/library/nginx/manifests/1.25", status: 200, body: []byte{}, mediaType: dockerV2, digest: f.nginx.digest},
		{name: "docker manifest", method: "GET", path: "/v2/library/nginx/manifests/1.25", status: 200, body: f.nginx.data, mediaType: dockerV2, digest: f.nginx.digest},
		{name: "blob", method: "GET", path: "/v2/app/web/blobs/" + f.layer.digest, status: 200, body: f.layer.data, digest: f.layer.digest},
		{name: "head blob", method: "HEAD", path: "/v2/app/web/blobs/" + f.armLayer.digest, status: 200, body: []byte{}, digest: f.armLayer.digest},
		{name: "manifest as blob", method: "GET", path: "/v2/app/web/blobs/" + f.webAMD64.digest, status: 200, body: f.webAMD64.data, digest: f.webAMD64.digest},
		{name: "range", method: "GET", path: "/v2/app/web/blobs/" + f.layer.digest, header: []string{"Range", "bytes=10-19"}, status: 206, body: f.layer.data[10:20], digest: f.layer.digest},
		{name: "suffix range", method: "GET", path: "/v2/app/web/blobs/" + f.layer.digest, header: []string{"Range", "bytes=-5"}, status: 206, body: f.layer.data[len(f.layer.data)-5:], digest: f.layer.digest},
		{name: "healthz", method: "GET", path: "/healthz", status: 200, body: []byte("ok\n")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := do(t, tt.method, srv.URL+tt.path, tt.header...)
			if got.status != tt.status {
				t.Fatalf("status %d, want %d; body %s", got.status, tt.status, got.body)
			}
			if string(got.body) != string(tt.body) {
				t.Errorf("body differs: got %d bytes, want %d", len(got.body), len(tt.body))
			}
			if tt.mediaType != "" && got.header.Get("Content-Type") != tt.mediaType {
				t.Errorf("Content-Type %q, want %q", got.header.Get("Content-Type"), tt.mediaType)
			}
			if got.header.Get("Docker-Content-Digest") != tt.digest {
				t.Errorf("Docker-Content-Digest %q, want %q", got.header.Get("Docker-Content-Digest"), tt.digest)
			}
			if tt.method == "HEAD" && tt.digest != "" {
				size := map[string]int{f.nginx.digest: len(f.nginx.data), f.armLayer.digest: len(f.armLayer.data)}[tt.digest]
				if got.header.Get("Content-Length") != fmt.Sprint(size) {
					t.Errorf("Content-Length %q, want %d", got.header.Get("Content-Length"), size)
				}
			}
		})
	}
}

func TestRefused(t *testing.T) {
	f := writeFixture(t)
	_, srv := serveFixture(t, f, Options{})
	zeros := strings.Repeat("0", 64)
	tests := []struct {
		name   string
		method string
		path   string
		header []string
		status int
		code   string
	}{
		{name: "unknown repository", method: "GET", path: "/v2/no/such/manifests/v1", status: 404, code: codeNameUnknown},
		{name: "unknown tag", method: "GET", path: "/v2/app/web/manifests/v2", status: 404, code: codeManifestUnknown},
		{name: "invalid tag", method: "GET", path: "/v2/app/web/manifests/-bad", status: 404, code: codeManifestUnknown},
		{name: "unknown manifest", method: "GET", path: "/v2/app/web/manifests/sha256:" + zeros, status: 404, code: codeManifestUnknown},
		{name: "manifest of another repository", method: "GET", path: "/v2/app/web/manifests/" + f.nginx.digest, status: 404, code: codeManifestUnknown},
		{name: "blob of another repository", method: "GET", path: "/v2/app/web/blobs/" + f.nginxLayer.digest, status: 404, code: codeBlobUnknown},
		{name: "head blob of another repository", method: "HEAD", path: "/v2/library/nginx/blobs/" + f.layer.digest, status: 404},
		{name: "unknown blob", method: "GET", path: "/v2/app/web/blobs/sha256:" + zeros, status: 404, code: codeBlobUnknown},
		{name: "sha512 blob", method: "GET", path: "/v2/app/web/blobs/sha512:" + zeros + zeros, status: 404, code: codeBlobUnknown},
		{name: "dot dot name", method: "GET", path: "/v2/app/../web/manifests/v1", status: 400, code: codeNameInvalid},
		{name: "dot dot only", method: "GET", path: "/v2/../manifests/v1", status: 400, code: codeNameInvalid},
		{name: "encoded dot dot", method: "GET", path: "/v2/app/%2e%2e/web/manifests/v1", status: 400, code: codeNameInvalid},
		{name: "encoded slash", method: "GET", path: "/v2/app%2Fweb%2F..%2Fx/blobs/" + f.layer.digest, status: 400, code: codeNameInvalid},
		{name: "encoded nul", method: "GET", path: "/v2/app/web%00/manifests/v1", status: 400, code: codeNameInvalid},
		{name: "upper case name", method: "GET", path: "/v2/App/web/manifests/v1", status: 400, code: codeNameInvalid},
		{name: "long name", method: "GET", path: "/v2/" + strings.Repeat("a/", 200) + "b/manifests/v1", status: 400, code: codeNameInvalid},
		{name: "md5 digest", method: "GET", path: "/v2/app/web/blobs/md5:" + zeros[:32], status: 400, code: codeDigestInvalid},
		{name: "short digest", method: "GET", path: "/v2/app/web/blobs/sha256:abc", status: 400, code: codeDigestInvalid},
		{name: "long digest", method: "GET", path: "/v2/app/web/manifests/sha256:" + zeros + "0", status: 400, code: codeDigestInvalid},
		{name: "upper hex digest", method: "GET", path: "/v2/app/web/blobs/sha256:" + strings.ToUpper(f.layer.digest[7:]), status: 400, code: codeDigestInvalid},
		{name: "bad digest string", method: "GET", path: "/v2/app/web/manifests/sha256:baddigeststring", status: 400, code: codeDigestInvalid},
		{name: "referrers bad digest", method: "GET", path: "/v2/app/web/referrers/sha1:" + zeros[:40], status: 400, code: codeDigestInvalid},
		{name: "range past the end", method: "GET", path: "/v2/app/web/blobs/" + f.layer.digest, header: []string{"Range", "bytes=99999999-"}, status: 416},
		{name: "nonsense range", method: "GET", path: "/v2/app/web/blobs/" + f.layer.digest, header: []string{"Range", "bytes=9-2"}, status: 416},
		{name: "negative n", method: "GET", path: "/v2/_catalog?n=-1", status: 400, code: codePaginationBad},
		{name: "word n", method: "GET", path: "/v2/app/web/tags/list?n=many", status: 400, code: codePaginationBad},
		{name: "overflowing n", method: "GET", path: "/v2/_catalog?n=99999999999999999999999", status: 400, code: codePaginationBad},
		{name: "put manifest", method: "PUT", path: "/v2/app/web/manifests/v1", status: 405, code: codeUnsupported},
		{name: "post upload", method: "POST", path: "/v2/app/web/blobs/uploads/", status: 405, code: codeUnsupported},
		{name: "patch upload", method: "PATCH", path: "/v2/app/web/blobs/uploads/x", status: 405, code: codeUnsupported},
		{name: "delete manifest", method: "DELETE", path: "/v2/app/web/manifests/" + f.web.digest, status: 405, code: codeUnsupported},
		{name: "delete blob", method: "DELETE", path: "/v2/app/web/blobs/" + f.layer.digest, status: 405, code: codeUnsupported},
		{name: "not the api", method: "GET", path: "/etc/passwd", status: 404},
		{name: "operation inside the name", method: "GET", path: "/v2/app/manifests/web/blobs/" + f.layer.digest, status: 404, code: codeNameUnknown},
		{name: "blobs repository tags", method: "GET", path: "/v2/app/blobs/tags/list", status: 404, code: codeNameUnknown},
		{name: "slash in the digest", method: "GET", path: "/v2/app/web/blobs/sha256:/" + zeros, status: 404, code: codeUnsupported},
		{name: "no name", method: "GET", path: "/v2/manifests/v1", status: 400, code: codeNameInvalid},
		{name: "upload path", method: "GET", path: "/v2/app/web/blobs/uploads/x", status: 404, code: codeUnsupported},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := do(t, tt.method, srv.URL+tt.path, tt.header...)
			if got.status != tt.status {
				t.Fatalf("status %d, want %d; body %s", got.status, tt.status, got.body)
			}
			if tt.code != "" {
				if c := errorCode(t, got.body); c != tt.code {
					t.Errorf("code %s, want %s (%s)", c, tt.code, got.body)
				}
			}
			// A 416 still names the blob whose range was wrong.
			if got.status != http.StatusRequestedRangeNotSatisfiable && got.header.Get("Docker-Content-Digest") != "" {
				t.Errorf("an error carries Docker-Content-Digest %q", got.header.Get("Docker-Content-Digest"))
			}
		})
	}
}

func TestListsAndPages(t *testing.T) {
	f := writeFixture(t)
	_, srv := serveFixture(t, f, Options{})
	type catalog struct {
		Repositories []string `json:"repositories"`
	}
	type tags struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}
	tests := []struct {
		name string
		path string
		want any
		link string
	}{
		{name: "catalog", path: "/v2/_catalog", want: &catalog{[]string{"app/web", "library/nginx"}}},
		{name: "catalog first page", path: "/v2/_catalog?n=1", want: &catalog{[]string{"app/web"}}, link: `</v2/_catalog?last=app%2Fweb&n=1>; rel="next"`},
		{name: "catalog last page", path: "/v2/_catalog?n=1&last=app/web", want: &catalog{[]string{"library/nginx"}}},
		{name: "catalog past the end", path: "/v2/_catalog?last=zzz", want: &catalog{[]string{}}},
		{name: "catalog n=0", path: "/v2/_catalog?n=0", want: &catalog{[]string{}}},
		{name: "catalog huge n", path: "/v2/_catalog?n=2147483647000", want: &catalog{[]string{"app/web", "library/nginx"}}},
		{name: "tags", path: "/v2/app/web/tags/list", want: &tags{"app/web", []string{"v1"}}},
		{name: "tags after last", path: "/v2/library/nginx/tags/list?last=1.25", want: &tags{"library/nginx", []string{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := do(t, "GET", srv.URL+tt.path)
			if got.status != 200 {
				t.Fatalf("status %d: %s", got.status, got.body)
			}
			dst := map[bool]any{true: &catalog{}, false: &tags{}}[strings.Contains(tt.path, "_catalog")]
			if err := json.Unmarshal(got.body, dst); err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.want, dst); d != "" {
				t.Errorf("(-want +got)\n%s", d)
			}
			if l := got.header.Get("Link"); l != tt.link {
				t.Errorf("Link %q, want %q", l, tt.link)
			}
		})
	}
}

func TestReferrers(t *testing.T) {
	f := writeFixture(t)
	_, srv := serveFixture(t, f, Options{})
	type desc struct {
		MediaType    string            `json:"mediaType"`
		Digest       string            `json:"digest"`
		Size         int               `json:"size"`
		ArtifactType string            `json:"artifactType,omitempty"`
		Annotations  map[string]string `json:"annotations,omitempty"`
	}
	type index struct {
		SchemaVersion int    `json:"schemaVersion"`
		MediaType     string `json:"mediaType"`
		Manifests     []desc `json:"manifests"`
	}
	sig := desc{ociManifest, f.sig.digest, len(f.sig.data), "application/example.sig", map[string]string{"org.example.kind": "signature"}}
	tests := []struct {
		name     string
		path     string
		want     []desc
		filtered bool
	}{
		{name: "subject", path: "/v2/app/web/referrers/" + f.web.digest, want: []desc{sig}},
		{name: "filter matches", path: "/v2/app/web/referrers/" + f.web.digest + "?artifactType=application/example.sig", want: []desc{sig}, filtered: true},
		{name: "filter excludes", path: "/v2/app/web/referrers/" + f.web.digest + "?artifactType=application/other", want: []desc{}, filtered: true},
		{name: "no referrers", path: "/v2/app/web/referrers/" + f.webAMD64.digest, want: []desc{}},
		{name: "unknown subject", path: "/v2/library/nginx/referrers/sha256:" + strings.Repeat("a", 64), want: []desc{}},
		{name: "other repository", path: "/v2/library/nginx/referrers/" + f.web.digest, want: []desc{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := do(t, "GET", srv.URL+tt.path)
			if got.status != 200 || got.header.Get("Content-Type") != ociIndex {
				t.Fatalf("status %d, Content-Type %q: %s", got.status, got.header.Get("Content-Type"), got.body)
			}
			var idx index
			if err := json.Unmarshal(got.body, &idx); err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(index{2, ociIndex, tt.want}, idx); d != "" {
				t.Errorf("(-want +got)\n%s", d)
			}
			if applied := got.header.Get("OCI-Filters-Applied") == "artifactType"; applied != tt.filtered {
				t.Errorf("OCI-Filters-Applied %q, want filtered=%v", got.header.Get("OCI-Filters-Applied"), tt.filtered)
			}
		})
	}
}

func TestLayoutsAndLock(t *testing.T) {
	f := writeFixture(t)
	tests := []struct {
		name  string
		o     Options
		repos []string
		tag   string // a tag path that must answer
		lock  []string
	}{
		{name: "path", o: Options{}, repos: []string{"app/web", "library/nginx"}, tag: "/v2/library/nginx/manifests/1.25",
			lock: []string{"127.0.0.1:5000/app/web@" + f.web.digest, "127.0.0.1:5000/library/nginx@" + f.nginx.digest, "127.0.0.1:5000/app/web@" + f.sig.digest}},
		{name: "path with prefix", o: Options{Path: "mirror"}, repos: []string{"mirror/app/web", "mirror/library/nginx"}, tag: "/v2/mirror/app/web/manifests/v1",
			lock: []string{"127.0.0.1:5000/mirror/app/web@" + f.web.digest, "127.0.0.1:5000/mirror/library/nginx@" + f.nginx.digest, "127.0.0.1:5000/mirror/app/web@" + f.sig.digest}},
		{name: "host", o: Options{Layout: destination.LayoutHost}, repos: []string{"docker.io/library/nginx", "example.com/app/web"}, tag: "/v2/docker.io/library/nginx/manifests/1.25",
			lock: []string{"127.0.0.1:5000/example.com/app/web@" + f.web.digest, "127.0.0.1:5000/docker.io/library/nginx@" + f.nginx.digest, "127.0.0.1:5000/example.com/app/web@" + f.sig.digest}},
		{name: "flat", o: Options{Path: "all", Layout: destination.LayoutFlat}, repos: []string{"all"}, tag: "/v2/all/manifests/" + destination.FlatTag(f.nginx.digest),
			lock: []string{"127.0.0.1:5000/all@" + f.web.digest, "127.0.0.1:5000/all@" + f.nginx.digest, "127.0.0.1:5000/all@" + f.sig.digest}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x, srv := serveFixture(t, f, tt.o)
			if d := cmp.Diff(tt.repos, x.Repositories()); d != "" {
				t.Errorf("repositories (-want +got)\n%s", d)
			}
			if got := do(t, "GET", srv.URL+tt.tag); got.status != 200 {
				t.Errorf("GET %s: %d %s", tt.tag, got.status, got.body)
			}
			var relocated []string
			for _, im := range x.Lock("127.0.0.1:5000").Images {
				relocated = append(relocated, im.Relocated)
			}
			if d := cmp.Diff(tt.lock, relocated); d != "" {
				t.Errorf("lock (-want +got)\n%s", d)
			}
		})
	}
}

func TestFlatNeedsPath(t *testing.T) {
	f := writeFixture(t)
	x, err := newIndex(t, f.path, Options{Layout: destination.LayoutFlat})
	if !errors.Is(err, ErrFlatNeedsPath) {
		t.Fatalf("got %v, %v; want ErrFlatNeedsPath", x, err)
	}
}

// TestConnectionsBounded opens many connections at once against a server
// bounded to a few: every request is answered, never more than the bound
// at once.
func TestConnectionsBounded(t *testing.T) {
	f := writeFixture(t)
	x, err := newIndex(t, f.path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	const bound, clients = 4, 300
	var inFlight, peak atomic.Int64
	counted := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(2 * time.Millisecond)
		x.Handler(nil).ServeHTTP(w, r)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- Serve(ctx, ln, counted, ServerOptions{MaxConns: bound}) }()
	url := "http://" + ln.Addr().String() + "/v2/app/web/blobs/" + f.layer.digest
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A client of its own: a connection each, none reused.
			c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 30 * time.Second}
			resp, err := c.Get(url)
			if err != nil {
				failed.Add(1)
				return
			}
			n, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || n != int64(len(f.layer.data)) {
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	cancel()
	if err := <-served; err != nil {
		t.Errorf("Serve after cancel: %v", err)
	}
	if failed.Load() != 0 {
		t.Errorf("%d of %d requests failed", failed.Load(), clients)
	}
	if p := peak.Load(); p > bound {
		t.Errorf("%d requests at once, bound %d", p, bound)
	}
	t.Logf("peak %d requests at once for %d clients", peak.Load(), clients)
}

// TestShutdown: a cancelled context stops the server, which then refuses
// connections.
func TestShutdown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		served <- Serve(ctx, ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), ServerOptions{})
	}()
	addr := ln.Addr().String()
	if _, err := http.Get("http://" + addr + "/"); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Error("still accepting after shutdown")
	}
}

// TestTLS serves over TLS with the given certificate: a client trusting
// its CA pulls, a plain-HTTP request gets no answer from the API.
func TestTLS(t *testing.T) {
	f := writeFixture(t)
	x, err := newIndex(t, f.path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	caFile, cert, key := testutil.WriteTLS(t, t.TempDir())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- Serve(ctx, ln, x.Handler(nil), ServerOptions{TLSCertFile: cert, TLSKeyFile: key}) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 10 * time.Second}
	resp, err := c.Get("https://" + ln.Addr().String() + "/v2/app/web/manifests/v1")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != string(f.web.data) {
		t.Errorf("over TLS: %d, %d bytes", resp.StatusCode, len(b))
	}
	plain := &http.Client{Timeout: 10 * time.Second}
	if resp, err := plain.Get("http://" + ln.Addr().String() + "/v2/"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Error("plain HTTP answered 200 on a TLS server")
		}
	}
}

func TestServeRefusesHalfTLS(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := Serve(context.Background(), ln, http.NotFoundHandler(), ServerOptions{TLSCertFile: "cert.pem"}); err == nil {
		t.Error("a certificate without a key was accepted")
	}
}
