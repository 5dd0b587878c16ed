package e2e

import (
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/pkg/internal/testutil"
	"github.com/ferry-dev/ferry/pkg/lock"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// TestTransientFaults runs resolve, pkg, unpkg and relocate through fault
// proxies that answer 503 to every fifth request, 429 with Retry-After to
// the first manifest requests and uploads, and cut the large blob's first
// download halfway: each completes, every digest intact.
func TestTransientFaults(t *testing.T) {
	skipShort(t)
	dir := t.TempDir()
	src, std := standardSource(t)
	sp := testutil.StartFaultProxy(t, src.Host)
	ims := images(std, sp.Host)
	large := std.Large.Blobs[1]
	cut := sp.CutBlob(1, large, smallLayer/2)
	srcLimited := sp.Add(testutil.Fault{Kind: testutil.KindManifest, First: 3, Status: http.StatusTooManyRequests, RetryAfter: "1"})
	srcFailed := sp.FailEvery(5, http.StatusServiceUnavailable)

	air := testutil.StartRegistry(t)
	dp := testutil.StartFaultProxy(t, air.Host)
	dstLimited := dp.Add(testutil.Fault{Method: http.MethodPost, Kind: testutil.KindUpload, First: 2, Status: http.StatusTooManyRequests, RetryAfter: "1"})
	dstFailed := dp.FailEvery(5, http.StatusServiceUnavailable)
	insecure := []string{"--insecure-registry", sp.Host, "--insecure-registry", dp.Host}

	writeFile(t, filepath.Join(dir, "release.yaml"), podsYAML(ims))
	testutil.MustFerry(t, dir, append([]string{"resolve", "-f", "release.yaml", "--lock-output", "images.lock.yaml", "-o", "pinned.yaml"}, insecure...)...)
	lf, err := lock.Read(filepath.Join(dir, "images.lock.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, im := range ims {
		if e, ok := lf.Lookup(im.written); !ok || e.Digest != im.f.Digest {
			t.Errorf("resolve: %s pinned to %q, want %s", im.written, e.Digest, im.f.Digest)
		}
	}

	testutil.MustFerry(t, dir, append([]string{"pkg", "--lock", "images.lock.yaml", "-o", "bundle.tar"}, insecure...)...)
	testutil.MustFerry(t, dir, "verify", "-i", "bundle.tar")
	if sp.Hits(cut) != 1 {
		t.Errorf("the large blob's download was cut %d times, want 1", sp.Hits(cut))
	}
	if n := sp.Count(http.MethodGet, testutil.KindBlob, large); n < 2 {
		t.Errorf("the large blob was asked for %d times after a cut; want a resumed download", n)
	}

	testutil.MustFerry(t, dir, append([]string{"unpkg", "-i", "bundle.tar", "--repository", dp.Host + "/air", "--lock-output", "air.lock.yaml"}, insecure...)...)
	judge(t, air.Host, "air", ims)

	cut2 := sp.CutBlob(1, large, smallLayer/3)
	testutil.MustFerry(t, dir, append([]string{"relocate", "--lock", "images.lock.yaml", "--repository", dp.Host + "/direct", "--lock-output", "direct.lock.yaml"}, insecure...)...)
	judge(t, air.Host, "direct", ims)
	if sp.Hits(cut2) != 1 {
		t.Errorf("relocate: the large blob's download was cut %d times, want 1", sp.Hits(cut2))
	}

	for _, f := range []struct {
		name string
		p    *testutil.FaultProxy
		f    *testutil.Fault
	}{
		{"source 429", sp, srcLimited}, {"source 503", sp, srcFailed},
		{"target 429", dp, dstLimited}, {"target 503", dp, dstFailed},
	} {
		if f.p.Hits(f.f) == 0 {
			t.Errorf("fault %q never hit: the test did not test it", f.name)
		}
		t.Logf("fault %q hit %d requests", f.name, f.p.Hits(f.f))
	}
}

// TestUnreachableRegistry points every command at a registry that is down
// (connections refused) and at one that blackholes (accepts, never
// answers): each exits 1 with one line on stderr naming the registry, in
// bounded time. It runs in parallel with other tests: it mostly waits.
func TestUnreachableRegistry(t *testing.T) {
	skipShort(t)
	t.Parallel()
	dir := t.TempDir()
	src := testutil.StartRegistry(t)
	f := testutil.PushImage(t, src, "app/one", "v1", testutil.ImageSpec{Layers: []v1.Layer{testutil.TarLayer("a", []byte("a"))}})
	good := []image{{f: f, written: src.Host + "/app/one:v1", repo: "app/one", tag: "v1"}}
	writeLock(t, dir, "good.lock.yaml", good)
	testutil.MustFerry(t, dir, "pkg", "--lock", "good.lock.yaml", "-o", "bundle.tar", "--insecure-registry", src.Host, "-q")

	type run struct {
		what, host string
		limit      time.Duration
		args       []string
	}
	var runs []run
	var outputs []string
	for _, tt := range []struct {
		name  string
		host  string
		limit time.Duration
	}{
		// Refused at once: the retries' backoff, about 5s in all.
		{"down", testutil.ClosedPort(t), 30 * time.Second},
		// Each try waits for an answer (TLS handshake 10s, headers 20s),
		// twice: about 40s.
		{"blackholed", testutil.StartBlackhole(t), 90 * time.Second},
	} {
		bad := []image{{f: f, written: tt.host + "/app/one:v1", repo: "app/one", tag: "v1"}}
		name := tt.name
		writeLock(t, dir, name+".lock.yaml", bad)
		relocated := lock.New()
		relocated.Images = []lock.Image{{Image: "app/one:v1", Digest: f.Digest, MediaType: f.MediaType, Resolved: src.Host + "/app/one@" + f.Digest, Relocated: tt.host + "/app/one@" + f.Digest}}
		if err := relocated.Write(filepath.Join(dir, name+".relocated.yaml"), lock.FormatFerry); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, name+".yaml"), podsYAML(bad))
		ins := []string{"--insecure-registry", tt.host, "--insecure-registry", src.Host}
		for _, args := range [][]string{
			{"resolve", "-f", name + ".yaml"},
			{"pkg", "--lock", name + ".lock.yaml", "-o", name + ".tar"},
			{"unpkg", "-i", "bundle.tar", "--repository", tt.host + "/air", "--lock-output", name + ".out.yaml"},
			{"relocate", "--lock", name + ".lock.yaml", "--repository", src.Host + "/copy", "--lock-output", name + ".out2.yaml"},
			{"relocate", "--lock", "good.lock.yaml", "--repository", tt.host + "/copy", "--lock-output", name + ".out3.yaml"},
			{"verify", "--lock", name + ".relocated.yaml"},
		} {
			runs = append(runs, run{what: tt.name + " registry: ferry " + strings.Join(args[:3], " "), host: tt.host, limit: tt.limit, args: append(args, ins...)})
		}
		outputs = append(outputs, name+".tar", name+".out.yaml", name+".out2.yaml", name+".out3.yaml")
	}
	// All at once: the blackholed runs spend their time waiting.
	var all [][]string
	for _, r := range runs {
		all = append(all, r.args)
	}
	for i, r := range runAll(t, dir, all) {
		w := runs[i]
		t.Logf("%s: exit %d after %v: %s", w.what, r.Code, r.Took.Round(100*time.Millisecond), r.Stderr)
		if r.Code != 1 || len(r.Lines()) != 1 || !strings.Contains(r.Stderr, w.host) {
			t.Errorf("%s: exit %d, stderr %q; want 1 and one line naming %s", w.what, r.Code, r.Stderr, w.host)
		}
		if r.Took > w.limit {
			t.Errorf("%s: took %v, want at most %v", w.what, r.Took, w.limit)
		}
	}
	for _, out := range outputs {
		if exists(t, filepath.Join(dir, out)) {
			t.Errorf("%s written", out)
		}
	}
}

// TestLyingRegistry has the source serve other bytes for a manifest digest
// and corrupt a blob: pkg and relocate refuse, naming the digest asked and
// the digest got, write nothing at a final path, and leave no tag on an
// image that holds the lying digest. Other images may be there whole:
// relocate tags each image once its own content is in and checked, as a
// run stopped at any other point would leave them.
func TestLyingRegistry(t *testing.T) {
	skipShort(t)
	t.Parallel()
	dir := t.TempDir()
	src, std := standardSource(t)
	air := testutil.StartRegistry(t)
	proxy := testutil.StartFaultProxy(t, src.Host)
	ims := images(std, proxy.Host)
	writeLock(t, dir, "images.lock.yaml", ims)
	ins := []string{"--insecure-registry", proxy.Host, "--insecure-registry", air.Host}

	// refuse runs pkg and relocate and checks both refuse, naming want.
	// Progress lines may come before the error (images done before the bad
	// blob was reached); -q keeps stderr to the error itself.
	refuse := func(t *testing.T, name, lying string, want ...string) {
		t.Helper()
		pkg := testutil.RunFerry(t, dir, nil, append([]string{"-q", "pkg", "--lock", "images.lock.yaml", "-o", name + ".tar"}, ins...)...)
		rel := testutil.RunFerry(t, dir, nil, append([]string{"-q", "relocate", "--lock", "images.lock.yaml", "--repository", air.Host + "/" + name, "--lock-output", name + ".lock.yaml"}, ins...)...)
		for cmd, r := range map[string]testutil.Result{"pkg": pkg, "relocate": rel} {
			if r.Code != 1 || len(r.Lines()) != 1 {
				t.Errorf("%s: exit %d, stderr %q; want 1 and one line", cmd, r.Code, r.Stderr)
			}
			for _, w := range want {
				if !strings.Contains(r.Stderr, w) {
					t.Errorf("%s: stderr does not name %s:\n%s", cmd, w, r.Stderr)
				}
			}
		}
		for _, out := range []string{name + ".tar", name + ".lock.yaml"} {
			if exists(t, filepath.Join(dir, out)) {
				t.Errorf("%s written despite the refusal", out)
			}
		}
		affected := 0
		for _, im := range ims {
			if !holds(im.f, lying) {
				continue
			}
			affected++
			if !skopeoMissing(t, air.Host+"/"+name+"/"+im.repo+":"+im.tag) {
				t.Errorf("relocate tagged %s/%s/%s:%s, which holds the lying %s", air.Host, name, im.repo, im.tag, lying)
			}
		}
		if affected == 0 {
			t.Fatalf("no image holds %s: the test checks nothing", lying)
		}
	}

	t.Run("manifest", func(t *testing.T) {
		// The arm64 child of the OCI index is served as the amd64 one.
		asked, served := std.OCIIndex.Children[1], std.OCIIndex.Children[0]
		f := proxy.ServeManifest(asked.Digest, served.Manifest)
		defer proxy.Clear()
		refuse(t, "manifest", asked.Digest, asked.Digest, served.Digest)
		if proxy.Hits(f) == 0 {
			t.Error("the lying manifest was never served")
		}
	})

	t.Run("blob", func(t *testing.T) {
		layer := std.Shared[1].Blobs[3] // team/web's own layer
		resp, err := http.Get("http://" + src.Host + "/v2/team/web/blobs/" + layer)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET blob: %v %s", err, resp.Status)
		}
		f := proxy.CorruptBlob(layer, int64(len(b)))
		defer proxy.Clear()
		b[len(b)/2] ^= 0xff
		refuse(t, "blob", layer, layer, sha(b))
		if proxy.Hits(f) == 0 {
			t.Error("the corrupt blob was never served")
		}
	})
}

// holds reports whether digest is f, a manifest below it, or a blob of
// either.
func holds(f testutil.Fixture, digest string) bool {
	if f.Digest == digest || slices.Contains(f.Blobs, digest) {
		return true
	}
	for _, c := range f.Children {
		if holds(c, digest) {
			return true
		}
	}
	return false
}
