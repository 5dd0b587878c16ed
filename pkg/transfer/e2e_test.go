package transfer_test

// The end-to-end tests live here rather than in cmd/ferry because
// pkg/internal/testutil may only be imported from below pkg/. They build
// the real binary once and run it as a user would, against real registry
// processes of every kind (distribution v3, and Debian's 2.8 where it is
// installed), and let a plain HTTP GET and skopeo judge the digests.

import (
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/pkg/internal/testutil"
	"github.com/ferry-dev/ferry/pkg/lock"
)

// TestMain ends the run with the summary line of prerequisites skipped
// and removes the ferry binary built for the run.
func TestMain(m *testing.M) {
	os.Exit(testutil.Main(m))
}

// runFerry and mustFerry run the binary built once per test process.
func runFerry(t *testing.T, dir string, stdin []byte, args ...string) testutil.Result {
	t.Helper()
	return testutil.RunFerry(t, dir, stdin, args...)
}

func mustFerry(t *testing.T, dir string, args ...string) testutil.Result {
	t.Helper()
	return testutil.MustFerry(t, dir, args...)
}

func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: skipped with -short")
	}
}

// lockedFixture is a fixture as a lock entry: the reference as written,
// and the target repository path and tag it should land at.
type lockedFixture struct {
	f       testutil.Fixture
	written string
	repo    string // repository path in the source, e.g. team/api
	tag     string // tag expected at the target, "" for none
}

// transferSet pushes the standard set to src and writes a lock of it in
// dir, with a digest-pinned and a tag-and-digest reference among them.
func transferSet(t *testing.T, src *testutil.Registry, dir string) ([]lockedFixture, string) {
	t.Helper()
	std := testutil.StandardSet(t, src, 0)
	at := func(f testutil.Fixture) string {
		return strings.SplitN(strings.TrimPrefix(f.Ref, src.Host+"/"), ":", 2)[0]
	}
	fixtures := []lockedFixture{
		{f: std.OCIIndex, written: std.OCIIndex.Ref, tag: "v0.50"},
		{f: std.ManifestList, written: std.ManifestList.Ref + "@" + std.ManifestList.Digest, tag: "1.25"},
		{f: std.Nested, written: std.Nested.Ref, tag: "v1"},
		{f: std.Shared[0], written: std.Shared[0].Ref, tag: "v1"},
		{f: std.Shared[1], written: std.Shared[1].Ref, tag: "v1"},
		{f: std.Shared[2], written: src.Host + "/" + at(std.Shared[2]) + "@" + std.Shared[2].Digest},
		{f: std.ConfigOnly, written: std.ConfigOnly.Ref, tag: "v1"},
		{f: std.Large, written: std.Large.Ref, tag: "v1"},
	}
	lf := lock.New()
	for i := range fixtures {
		fx := &fixtures[i]
		fx.repo = at(fx.f)
		lf.Images = append(lf.Images, lock.Image{
			Image:     fx.written,
			Digest:    fx.f.Digest,
			MediaType: fx.f.MediaType,
			Resolved:  src.Host + "/" + fx.repo + "@" + fx.f.Digest,
		})
	}
	path := filepath.Join(dir, "images.lock.yaml")
	if err := lf.Write(path, lock.FormatFerry); err != nil {
		t.Fatal(err)
	}
	return fixtures, path
}

// judge has the judges check that every manifest of every fixture, children
// included, is at reg/prefix/<repo> with its digest unchanged, and that
// the tags point at the roots.
func judge(t *testing.T, reg *testutil.Registry, prefix string, fixtures []lockedFixture) {
	t.Helper()
	for _, fx := range fixtures {
		repo := reg.Host + "/" + prefix + "/" + fx.repo
		for _, d := range fx.f.Manifests() {
			if got := testutil.SkopeoDigest(t, repo+"@"+d, true); got != d {
				t.Errorf("%s@%s: the served manifest hashes to %s", repo, d, got)
			}
		}
		if fx.tag != "" {
			if got := testutil.SkopeoDigest(t, repo+":"+fx.tag, true); got != fx.f.Digest {
				t.Errorf("%s:%s serves %s, want %s", repo, fx.tag, got, fx.f.Digest)
			}
		}
	}
}

// note reads the closing note's counters from stderr.
func note(t *testing.T, stderr string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for _, m := range regexp.MustCompile(`(\w+_\w+)=(\d+)`).FindAllStringSubmatch(stderr, -1) {
		n, _ := strconv.ParseInt(m[2], 10, 64)
		out[m[1]] = n
	}
	if _, ok := out["blobs_uploaded"]; !ok {
		t.Fatalf("no closing note on stderr:\n%s", stderr)
	}
	return out
}

// uniqueBlobs is the number and total size of the distinct blobs of the
// fixtures, and how many (repository, blob) pairs they make.
func uniqueBlobs(t *testing.T, src *testutil.Registry, fixtures []lockedFixture) (n int, size int64, pairs int) {
	t.Helper()
	seen := map[string]bool{}
	perRepo := map[string]map[string]bool{}
	for _, fx := range fixtures {
		if perRepo[fx.repo] == nil {
			perRepo[fx.repo] = map[string]bool{}
		}
		for _, b := range fx.f.AllBlobs() {
			if !perRepo[fx.repo][b] {
				perRepo[fx.repo][b] = true
				pairs++
			}
			if seen[b] {
				continue
			}
			seen[b] = true
			hex := strings.TrimPrefix(b, "sha256:")
			st, err := os.Stat(filepath.Join(src.StorageDir, "docker/registry/v2/blobs/sha256", hex[:2], hex, "data"))
			if err != nil {
				t.Fatal(err)
			}
			n++
			size += st.Size()
		}
	}
	return n, size, pairs
}

func headStatus(t *testing.T, url string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodHead, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// startRegistry starts a plain registry of kind.
func startRegistry(t *testing.T, kind testutil.RegistryKind) *testutil.Registry {
	t.Helper()
	return testutil.StartRegistryWith(t, testutil.RegistryOptions{Kind: kind})
}

func TestRelocateEndToEnd(t *testing.T) {
	skipShort(t)
	for _, kind := range testutil.RegistryKinds() {
		t.Run(string(kind), func(t *testing.T) { testRelocateEndToEnd(t, kind) })
	}
}

func testRelocateEndToEnd(t *testing.T, kind testutil.RegistryKind) {
	dir := t.TempDir()
	src, dst := startRegistry(t, kind), startRegistry(t, kind)
	// The proxy counts what ferry sends to the target.
	proxy := testutil.StartFaultProxy(t, dst.Host)
	fixtures, lockPath := transferSet(t, src, dir)
	wantBlobs, wantBytes, pairs := uniqueBlobs(t, src, fixtures)
	out := filepath.Join(dir, "relocated.lock.yaml")
	// -v: the closing counts are a structured debug line.
	args := []string{"-v", "relocate", "--lock", lockPath, "--repository", proxy.Host + "/mirror", "--lock-output", out,
		"--insecure-registry", src.Host, "--insecure-registry", proxy.Host}

	r := mustFerry(t, dir, args...)
	if r.Stdout != "" {
		t.Errorf("relocate --lock --lock-output printed %q, want nothing", r.Stdout)
	}
	got := note(t, r.Stderr)
	t.Logf("first relocate: %d unique blobs (%d bytes) in %d (repository, blob) pairs; uploaded %d blobs (%d bytes), mounted %d (%d bytes)",
		wantBlobs, wantBytes, pairs, got["blobs_uploaded"], got["bytes_uploaded"], got["blobs_mounted"], got["bytes_mounted"])
	if got["blobs_uploaded"] != int64(wantBlobs) || got["bytes_uploaded"] != wantBytes {
		t.Errorf("uploaded %d blobs (%d bytes), want each unique blob once: %d (%d bytes)", got["blobs_uploaded"], got["bytes_uploaded"], wantBlobs, wantBytes)
	}
	if got["blobs_mounted"] != int64(pairs-wantBlobs) {
		t.Errorf("mounted %d blobs, want %d", got["blobs_mounted"], pairs-wantBlobs)
	}
	if n := proxy.Count(http.MethodPut, testutil.KindUpload, ""); n != wantBlobs {
		t.Errorf("the target received %d blob uploads, want %d", n, wantBlobs)
	}

	judge(t, dst, "mirror", fixtures)
	if s := headStatus(t, "http://"+dst.Host+"/v2/mirror/tools/cli/manifests/v1"); s != http.StatusNotFound {
		t.Errorf("a digest-only reference left tag tools/cli:v1 (HEAD %d)", s)
	}
	lf, err := lock.Read(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, fx := range fixtures {
		im, ok := lf.Lookup(fx.written)
		if want := proxy.Host + "/mirror/" + fx.repo + "@" + fx.f.Digest; !ok || im.Relocated != want {
			t.Errorf("lock entry %s relocated to %q, want %s", fx.written, im.Relocated, want)
		}
	}

	t.Run("rerun sends nothing", func(t *testing.T) {
		before := len(proxy.Seen())
		r := mustFerry(t, dir, args...)
		got := note(t, r.Stderr)
		for _, k := range []string{"blobs_uploaded", "blobs_mounted", "manifests_pushed", "tags_pushed"} {
			if got[k] != 0 {
				t.Errorf("%s = %d on a rerun, want 0", k, got[k])
			}
		}
		for _, req := range proxy.Seen()[before:] {
			if req.Method != http.MethodHead && req.Method != http.MethodGet {
				t.Errorf("rerun sent %s %s", req.Method, req.Path)
			}
		}
	})

	t.Run("verify finds everything, then a missing blob", func(t *testing.T) {
		mustFerry(t, dir, "verify", "--lock", out, "--insecure-registry", proxy.Host)
		// Unlink one layer of team/web from its repository.
		layer := strings.TrimPrefix(fixtures[4].f.Blobs[3], "sha256:")
		link := filepath.Join(dst.StorageDir, "docker/registry/v2/repositories/mirror/team/web/_layers/sha256", layer)
		if err := os.RemoveAll(link); err != nil {
			t.Fatal(err)
		}
		r := runFerry(t, dir, nil, "verify", "--lock", out, "--insecure-registry", proxy.Host)
		if r.Code != 1 || !strings.Contains(r.Stderr, layer) || !strings.Contains(r.Stderr, fixtures[4].written) {
			t.Errorf("verify of an incomplete registry: exit %d, stderr %q; want 1 naming the blob and the image", r.Code, r.Stderr)
		}
	})

	t.Run("layout collision pushes nothing", func(t *testing.T) {
		// The same repository named by two hosts: two sources for one target.
		port := src.Host[strings.LastIndex(src.Host, ":")+1:]
		d := fixtures[3].f.Digest
		lf := lock.New()
		for _, host := range []string{src.Host, "localhost:" + port} {
			lf.Images = append(lf.Images, lock.Image{Image: host + "/team/api:v1", Digest: d, MediaType: fixtures[3].f.MediaType, Resolved: host + "/team/api@" + d})
		}
		p := filepath.Join(dir, "collide.lock.yaml")
		if err := lf.Write(p, lock.FormatFerry); err != nil {
			t.Fatal(err)
		}
		before := len(proxy.Seen())
		r := runFerry(t, dir, nil, "relocate", "--lock", p, "--repository", proxy.Host+"/coll",
			"--insecure-registry", src.Host, "--insecure-registry", "localhost:"+port, "--insecure-registry", proxy.Host)
		if r.Code != 1 || strings.Count(r.Stderr, "\n") != 1 || !strings.Contains(r.Stderr, "--layout host") {
			t.Errorf("exit %d, stderr %q: want 1 and one line suggesting --layout host", r.Code, r.Stderr)
		}
		if n := len(proxy.Seen()) - before; n != 0 {
			t.Errorf("%d requests reached the target before the refusal", n)
		}
		if _, err := os.Stat(filepath.Join(dst.StorageDir, "docker/registry/v2/repositories/coll")); !os.IsNotExist(err) {
			t.Errorf("repository coll exists in the target: %v", err)
		}
	})

	t.Run("registry down", func(t *testing.T) {
		down := testutil.ClosedPort(t)
		start := time.Now()
		r := runFerry(t, dir, nil, "relocate", "--lock", lockPath, "--repository", down+"/mirror",
			"--insecure-registry", src.Host, "--insecure-registry", down)
		took := time.Since(start)
		if r.Code != 1 || strings.Count(r.Stderr, "\n") != 1 || !strings.Contains(r.Stderr, down) {
			t.Errorf("exit %d, stderr %q: want 1 and one line naming %s", r.Code, r.Stderr, down)
		}
		if took > 45*time.Second {
			t.Errorf("took %v to give up on a registry that refuses connections", took)
		}
		t.Logf("gave up after %v: %s", took.Round(100*time.Millisecond), r.Stderr)
	})
}

func TestUnpkgEndToEnd(t *testing.T) {
	skipShort(t)
	for _, kind := range testutil.RegistryKinds() {
		t.Run(string(kind), func(t *testing.T) { testUnpkgEndToEnd(t, kind) })
	}
}

func testUnpkgEndToEnd(t *testing.T, kind testutil.RegistryKind) {
	dir := t.TempDir()
	src, air := startRegistry(t, kind), startRegistry(t, kind)
	fixtures, lockPath := transferSet(t, src, dir)
	wantBlobs, wantBytes, _ := uniqueBlobs(t, src, fixtures)
	tarball := filepath.Join(dir, "bundle.tar")
	mustFerry(t, dir, "pkg", "--lock", lockPath, "-o", tarball, "--insecure-registry", src.Host)

	// The target is reached through a counting proxy: the registry's side
	// of the wire, not ferry's counters, says what was sent.
	proxy := testutil.StartFaultProxy(t, air.Host)
	out := filepath.Join(dir, "relocated.lock.yaml")
	args := []string{"-v", "unpkg", "-i", tarball, "--repository", proxy.Host + "/air", "--lock-output", out, "--insecure-registry", proxy.Host}
	r := mustFerry(t, dir, args...)
	got := note(t, r.Stderr)
	t.Logf("unpkg: %d unique blobs (%d bytes); uploaded %d (%d bytes), mounted %d (%d bytes)",
		wantBlobs, wantBytes, got["blobs_uploaded"], got["bytes_uploaded"], got["blobs_mounted"], got["bytes_mounted"])
	if got["blobs_uploaded"] != int64(wantBlobs) || got["bytes_uploaded"] != wantBytes {
		t.Errorf("uploaded %d blobs (%d bytes), want %d (%d bytes)", got["blobs_uploaded"], got["bytes_uploaded"], wantBlobs, wantBytes)
	}
	if n := proxy.Count(http.MethodPut, testutil.KindUpload, ""); n != wantBlobs {
		t.Errorf("the registry received %d finished uploads, want %d", n, wantBlobs)
	}
	judge(t, air, "air", fixtures)
	lf, err := lock.Read(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, fx := range fixtures {
		im, ok := lf.Lookup(fx.written)
		if want := proxy.Host + "/air/" + fx.repo + "@" + fx.f.Digest; !ok || im.Relocated != want {
			t.Errorf("lock entry %s relocated to %q, want %s", fx.written, im.Relocated, want)
		}
	}
	mustFerry(t, dir, "verify", "--lock", out, "--insecure-registry", proxy.Host)

	before := len(proxy.Seen())
	r = mustFerry(t, dir, args...)
	again := note(t, r.Stderr)
	if again["blobs_uploaded"] != 0 || again["blobs_mounted"] != 0 || again["manifests_pushed"] != 0 || again["tags_pushed"] != 0 {
		t.Errorf("second unpkg pushed something: %v", again)
	}
	for _, req := range proxy.Seen()[before:] {
		if req.Method != http.MethodHead && req.Method != http.MethodGet {
			t.Errorf("second unpkg sent %s %s", req.Method, req.Path)
		}
	}

	t.Run("without credentials", func(t *testing.T) {
		t.Setenv("DOCKER_CONFIG", t.TempDir())
		htpasswd := filepath.Join(t.TempDir(), "htpasswd")
		// bcrypt (cost 4) of "ferry-pass".
		const line = "ferry:$2b$04$3/OwKHdGVC.H2Sady4P6n.rFozSQWb4JrtqL6GsCBScmMFAS7000C\n"
		if err := os.WriteFile(htpasswd, []byte(line), 0o600); err != nil {
			t.Fatal(err)
		}
		locked := testutil.StartRegistryWith(t, testutil.RegistryOptions{Htpasswd: htpasswd, Username: "ferry", Password: "ferry-pass", Kind: kind})
		r := runFerry(t, dir, nil, "unpkg", "-i", tarball, "--repository", locked.Host+"/air", "--insecure-registry", locked.Host)
		if r.Code != 1 || strings.Count(r.Stderr, "\n") != 1 || !strings.Contains(r.Stderr, "docker login "+locked.Host) {
			t.Errorf("exit %d, stderr %q: want 1 and one line saying docker login %s", r.Code, r.Stderr, locked.Host)
		}
	})
}
