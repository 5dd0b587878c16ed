package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/pkg/internal/testutil"
	"github.com/ferry-dev/ferry/pkg/lock"
	"github.com/google/go-containerregistry/pkg/crane"
	"golang.org/x/sync/errgroup"
)

// TestServe bundles the standard set, serves the bundle with the built
// binary and holds it to what a registry does: the OCI conformance suite's
// pull tests pass, skopeo, crane and oras copy every image out of it into a real
// registry with every manifest digest unchanged, the served lock names it
// and mirror-config reads that lock, and SIGTERM stops it cleanly.
func TestServe(t *testing.T) {
	skipShort(t)
	reg, std := standardSource(t)
	ims := images(std, reg.Host)
	dir := t.TempDir()
	lockPath := writeLock(t, dir, "images.lock.yaml", ims)
	testutil.MustFerry(t, dir, "pkg", "--lock", lockPath, "-o", "bundle.tar", "--insecure-registry", reg.Host)

	host := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	srv := start(t, dir, "serve", "-i", "bundle.tar", "--addr", host, "--lock-output", "served.lock.yaml", "-v")
	waitServing(t, srv, host)

	t.Run("conformance", func(t *testing.T) {
		idx := std.OCIIndex
		var blobs []string
		for _, c := range idx.Children {
			blobs = append(blobs, c.Blobs...)
		}
		res := testutil.RunConformance(t, testutil.ConformanceSuite(t), []string{
			"OCI_REGISTRY=" + host,
			"OCI_TLS=disabled",
			"OCI_REPO1=tekton/controller",
			"OCI_REPO2=library/nginx",
			// Read-only: pull, tag list and referrers on; every push and
			// delete off.
			"OCI_API_PULL=true",
			"OCI_API_PUSH=false",
			"OCI_API_TAGS_LIST=true",
			"OCI_API_TAGS_DELETE=false",
			"OCI_API_MANIFESTS_DELETE=false",
			"OCI_API_BLOBS_DELETE=false",
			"OCI_API_REFERRER=true",
			"OCI_RO_DATA_TAGS=v0.50",
			"OCI_RO_DATA_MANIFESTS=" + strings.Join(idx.Manifests(), " "),
			"OCI_RO_DATA_BLOBS=" + strings.Join(blobs, " "),
			// The bundle holds no referrers: the suite checks the list
			// answers, as an empty index.
			"OCI_RO_DATA_REFERRERS=" + idx.Digest,
		})
		t.Logf("%s", res.Report)
		if res.Fail != 0 || res.Error != 0 || res.Pass < 10 {
			t.Errorf("conformance: %d passed, %d failed, %d errors; output:\n%s", res.Pass, res.Fail, res.Error, res.Output)
		}
	})

	t.Run("skopeo copy", func(t *testing.T) {
		target := testutil.StartRegistry(t)
		// --preserve-digests: without it skopeo re-encodes these oddly
		// formatted manifests on the way, copying from Debian's registry
		// just the same (measured: team/api:v1 lands as sha256:0d9c1f… from
		// either source); with it skopeo must keep every digest or fail.
		// skopeo (containers/image) refuses an index of indexes
		// ("unexpectedly received a manifest list"): it copies the nested
		// set's inner index instead, by digest, tagged "inner".
		var copied []image
		for _, im := range ims {
			if im.f.Digest == std.Nested.Digest {
				im = image{f: std.Nested.Children[0], repo: im.repo, tag: "inner"}
			}
			copied = append(copied, im)
		}
		g, ctx := errgroup.WithContext(t.Context())
		g.SetLimit(4)
		for _, im := range copied {
			src := host + "/" + im.repo + ":" + im.tag
			if im.tag == "inner" {
				src = host + "/" + im.repo + "@" + im.f.Digest
			}
			for _, c := range [][2]string{
				{src, target.Host + "/bytag/" + im.repo + ":" + im.tag},
				{host + "/" + im.repo + "@" + im.f.Digest, target.Host + "/bydigest/" + im.repo + ":" + im.tag},
			} {
				g.Go(func() error {
					out, err := exec.CommandContext(ctx, "skopeo", "copy", "--all", "--preserve-digests", "--src-tls-verify=false", "--dest-tls-verify=false",
						"docker://"+c[0], "docker://"+c[1]).CombinedOutput()
					if err != nil {
						return fmt.Errorf("skopeo copy docker://%s docker://%s: %v: %s", c[0], c[1], err, out)
					}
					return nil
				})
			}
		}
		if err := g.Wait(); err != nil {
			t.Fatal(err)
		}
		judge(t, target.Host, "bytag", copied)
		judge(t, target.Host, "bydigest", copied)
	})

	t.Run("crane copy", func(t *testing.T) {
		target := testutil.StartRegistry(t)
		for _, im := range ims {
			src, dst := host+"/"+im.repo+":"+im.tag, target.Host+"/crane/"+im.repo+":"+im.tag
			if err := crane.Copy(src, dst, crane.Insecure, crane.WithContext(t.Context())); err != nil {
				t.Fatalf("crane copy %s %s: %v", src, dst, err)
			}
		}
		judge(t, target.Host, "crane", ims)
	})

	t.Run("oras copy", func(t *testing.T) {
		oras := testutil.Oras(t)
		target := testutil.StartRegistry(t)
		g, ctx := errgroup.WithContext(t.Context())
		g.SetLimit(4)
		for _, im := range ims {
			src, dst := host+"/"+im.repo+":"+im.tag, target.Host+"/oras/"+im.repo+":"+im.tag
			g.Go(func() error {
				out, err := exec.CommandContext(ctx, oras, "cp", "--from-plain-http", "--to-plain-http", src, dst).CombinedOutput()
				if err != nil {
					return fmt.Errorf("oras cp %s %s: %v: %s", src, dst, err, out)
				}
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			t.Fatal(err)
		}
		judge(t, target.Host, "oras", ims)
	})

	t.Run("served lock and mirror-config", func(t *testing.T) {
		lf, err := lock.Read(filepath.Join(dir, "served.lock.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{}
		for _, im := range ims {
			want[im.written] = host + "/" + im.repo + "@" + im.f.Digest
		}
		for _, im := range lf.Images {
			if im.Relocated != want[im.Image] {
				t.Errorf("%s: relocated %q, want %q", im.Image, im.Relocated, want[im.Image])
			}
			// The lock's location answers.
			if got := testutil.SkopeoDigest(t, im.Relocated, true); got != im.Digest {
				t.Errorf("%s: served manifest hashes to %s, want %s", im.Relocated, got, im.Digest)
			}
		}
		if len(lf.Images) != len(ims) {
			t.Errorf("served lock has %d images, want %d", len(lf.Images), len(ims))
		}
		testutil.MustFerry(t, dir, "mirror-config", "--lock", "served.lock.yaml", "--format", "containerd", "-o", "certs.d")
		toml, err := os.ReadFile(filepath.Join(dir, "certs.d", reg.Host, "hosts.toml"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(toml), `[host."https://`+host+`"]`) {
			t.Errorf("hosts.toml for %s does not send pulls to %s:\n%s", reg.Host, host, toml)
		}
	})

	t.Run("tls", func(t *testing.T) {
		ca, cert, key := testutil.WriteTLS(t, t.TempDir())
		tlsHost := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
		r := start(t, dir, "serve", "-i", "bundle.tar", "--addr", tlsHost, "--tls-cert", cert, "--tls-key", key)
		pem, err := os.ReadFile(ca)
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
		client := &http.Client{Transport: tr, Timeout: time.Second}
		if !r.waitFor(time.Minute, func() bool {
			resp, err := client.Get("https://" + tlsHost + "/v2/")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		}) {
			t.Fatalf("no HTTPS answer on %s; stderr:\n%s", tlsHost, r.stderr())
		}
		for _, im := range ims {
			for _, d := range im.f.Manifests() {
				raw, err := crane.Manifest(tlsHost+"/"+im.repo+"@"+d, crane.WithTransport(tr), crane.WithContext(t.Context()))
				if err != nil {
					t.Fatalf("over TLS: %v", err)
				}
				if got := sha(raw); got != d {
					t.Errorf("%s/%s@%s over TLS hashes to %s", tlsHost, im.repo, d, got)
				}
			}
		}
	})

	t.Run("damaged bundle refused", func(t *testing.T) {
		b, err := os.ReadFile(filepath.Join(dir, "bundle.tar"))
		if err != nil {
			t.Fatal(err)
		}
		off, _ := blobOffset(t, b, std.Large.Blobs[1])
		b[off+100] ^= 0xff
		writeFile(t, filepath.Join(dir, "damaged.tar"), b)
		served := testutil.RunFerry(t, dir, nil, "serve", "-i", "damaged.tar", "--addr", "127.0.0.1:0")
		verified := testutil.RunFerry(t, dir, nil, "verify", "-i", "damaged.tar")
		if served.Code != 1 || verified.Code != 1 {
			t.Fatalf("serve exit %d, verify exit %d; want 1 and 1", served.Code, verified.Code)
		}
		if s, v := served.Lines(), verified.Lines(); s[len(s)-1] != v[len(v)-1] {
			t.Errorf("serve says %q, verify %q: want the same words", s[len(s)-1], v[len(v)-1])
		}
		if !strings.Contains(served.Stderr, std.Large.Blobs[1]) {
			t.Errorf("serve does not name the damaged blob %s:\n%s", std.Large.Blobs[1], served.Stderr)
		}
	})

	t.Run("sigterm", func(t *testing.T) {
		if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case <-srv.done:
		case <-time.After(20 * time.Second):
			t.Fatalf("still running 20s after SIGTERM; stderr:\n%s", srv.stderr())
		}
		if srv.err != nil {
			t.Errorf("exit after SIGTERM: %v; stderr:\n%s", srv.err, srv.stderr())
		}
		// One debug line per request was logged.
		if n := strings.Count(srv.stderr(), "msg=request"); n < 50 {
			t.Errorf("%d request log lines, want one per request", n)
		}
	})
}

// waitServing waits until ferry serve answers GET /v2/ at host.
func waitServing(t *testing.T, r *run, host string) {
	t.Helper()
	ok := r.waitFor(time.Minute, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+host+"/v2/", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if !ok {
		t.Fatalf("ferry serve did not answer on %s; stderr:\n%s", host, r.stderr())
	}
}
