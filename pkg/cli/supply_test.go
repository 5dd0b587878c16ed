package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ferry-dev/ferry/pkg/access"
	"github.com/ferry-dev/ferry/pkg/bundle"
	"github.com/ferry-dev/ferry/pkg/graph"
	"github.com/ferry-dev/ferry/pkg/internal/testutil"
	"github.com/ferry-dev/ferry/pkg/lock"
	"github.com/ferry-dev/ferry/pkg/referrer"
	"github.com/ferry-dev/ferry/pkg/source"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// startMem starts an in-memory registry the test may stop early.
func startMem(t *testing.T, api bool) (*testutil.Registry, *httptest.Server) {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.WithReferrersSupport(api), registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return &testutil.Registry{Host: strings.TrimPrefix(srv.URL, "http://"), Scheme: "http", Transport: http.DefaultTransport, Auth: authn.Anonymous}, srv
}

// attachedAt lists subject, kind, tag and digest of every artifact found
// in repo for the image at digest, sorted.
func attachedAt(t *testing.T, host, repo, digest string) []string {
	t.Helper()
	c, err := access.New(access.Options{InsecureHosts: []string{host}})
	if err != nil {
		t.Fatal(err)
	}
	r, err := name.NewRepository(host+"/"+repo, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	src := source.New(c, r)
	h, _ := v1.NewHash(digest)
	root, err := graph.Walk(t.Context(), src, v1.Descriptor{Digest: h}, graph.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var subjects []v1.Hash
	for _, m := range root.Manifests() {
		subjects = append(subjects, m.Desc.Digest)
	}
	found, err := referrer.New(src, referrer.Options{NoAPI: source.ErrNoReferrersAPI}).Find(t.Context(), subjects...)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range found {
		out = append(out, strings.Join([]string{a.Subject.String(), a.Kind, a.Tag, a.Desc.Digest.String()}, " "))
	}
	slices.Sort(out)
	return out
}

func TestSupplyChainPkgUnpkgVerify(t *testing.T) {
	src, srcSrv := startMem(t, false)
	dst, _ := startMem(t, false)
	s := testutil.SignedSet(t, src)
	dir := t.TempDir()
	mf := filepath.Join(dir, "release.yaml")
	if err := os.WriteFile(mf, []byte("image: "+s.Index.Ref+"\n---\nimage: "+s.Image.Ref+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	lockFile := filepath.Join(dir, "images.lock.yaml")
	if _, stderr, code := runCLI(t, "", "resolve", "-f", mf, "--lock-output", lockFile, "--insecure-registry", src.Host); code != 0 {
		t.Fatalf("resolve: exit %d:\n%s", code, stderr)
	}
	tarball := filepath.Join(dir, "bundle.tar")
	if _, stderr, code := runCLI(t, "", "pkg", "--lock", lockFile, "-o", tarball, "--insecure-registry", src.Host, "--supply-chain"); code != 0 {
		t.Fatalf("pkg: exit %d:\n%s", code, stderr)
	}

	stdout, _, code := runCLI(t, "", "inspect", "-i", tarball, "-o", "json")
	var sum bundle.Summary
	if err := json.Unmarshal([]byte(stdout), &sum); code != 0 || err != nil {
		t.Fatalf("inspect: exit %d, %v", code, err)
	}
	n := 0
	var count func([]bundle.ArtifactSummary)
	count = func(as []bundle.ArtifactSummary) {
		for _, a := range as {
			n++
			count(a.Artifacts)
		}
	}
	for _, im := range sum.Images {
		count(im.Artifacts)
	}
	if n != len(s.Attached) {
		t.Errorf("inspect shows %d artifacts, want %d:\n%s", n, len(s.Attached), stdout)
	}
	stdout, _, _ = runCLI(t, "", "inspect", "-i", tarball)
	if !strings.Contains(stdout, "attestation") || !strings.Contains(stdout, testutil.CosignTag(s.Index.Digest, ".sig")) {
		t.Errorf("inspect text lacks the artifact tree:\n%s", stdout)
	}

	// A rerun over the finished bundle needs no registry.
	srcSrv.Close()
	if _, stderr, code := runCLI(t, "", "pkg", "--lock", lockFile, "-o", tarball, "--insecure-registry", src.Host, "--supply-chain"); code != 0 || !strings.Contains(stderr, "nothing fetched") {
		t.Fatalf("pkg rerun with the source down: exit %d:\n%s", code, stderr)
	}

	// Without the flag unpkg says what it leaves out.
	if _, stderr, code := runCLI(t, "", "unpkg", "-i", tarball, "--repository", dst.Host+"/bare", "--insecure-registry", dst.Host, "--supply-chain=false"); code != 0 || !strings.Contains(stderr, "--supply-chain") {
		t.Errorf("unpkg without --supply-chain: exit %d, no word on the artifacts left out:\n%s", code, stderr)
	}
	out := filepath.Join(dir, "relocated.lock.yaml")
	if _, stderr, code := runCLI(t, "", "unpkg", "-i", tarball, "--repository", dst.Host+"/mirror", "--insecure-registry", dst.Host, "--supply-chain", "--lock-output", out); code != 0 {
		t.Fatalf("unpkg: exit %d:\n%s", code, stderr)
	}
	for _, f := range s.All() {
		var want []string
		for _, a := range s.Attached {
			if slices.Contains(f.Manifests(), a.Subject) || slices.ContainsFunc(s.Attached, func(b testutil.Attached) bool {
				return b.Artifact.Digest == a.Subject && slices.Contains(f.Manifests(), b.Subject)
			}) {
				want = append(want, strings.Join([]string{a.Subject, a.Kind, a.Tag, a.Artifact.Digest}, " "))
			}
		}
		slices.Sort(want)
		repo := strings.SplitN(strings.SplitN(f.Ref, ":", 3)[1], "/", 2)[1]
		got := attachedAt(t, dst.Host, "mirror/"+repo, f.Digest)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s at the target (-want +got):\n%s", f.Ref, diff)
		}
	}
	lf, err := lock.Read(out)
	if err != nil {
		t.Fatal(err)
	}
	recorded := 0
	for _, im := range lf.Images {
		recorded += len(im.Artifacts)
	}
	if recorded != len(s.Attached) {
		t.Errorf("relocated lock records %d artifacts, want %d", recorded, len(s.Attached))
	}
	if stdout, stderr, code := runCLI(t, "", "verify", "--lock", out, "--insecure-registry", dst.Host); code != 0 {
		t.Errorf("verify --lock: exit %d\n%s\n%s", code, stdout, stderr)
	}
}

func TestSupplyChainRelocate(t *testing.T) {
	src, _ := startMem(t, false)
	dst, _ := startMem(t, true)
	s := testutil.SignedSet(t, src)
	dir := t.TempDir()
	mf := filepath.Join(dir, "release.yaml")
	if err := os.WriteFile(mf, []byte("image: "+s.Index.Ref+"\n---\nimage: "+s.Image.Ref+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "relocated.lock.yaml")
	if _, stderr, code := runCLI(t, "", "relocate", "-f", mf, "--repository", dst.Host+"/mirror", "--insecure-registry", src.Host, "--insecure-registry", dst.Host, "--supply-chain", "--lock-output", out); code != 0 {
		t.Fatalf("relocate: exit %d:\n%s", code, stderr)
	}
	for _, f := range s.All() {
		repo := strings.SplitN(strings.SplitN(f.Ref, ":", 3)[1], "/", 2)[1]
		want := attachedAt(t, src.Host, repo, f.Digest)
		got := attachedAt(t, dst.Host, "mirror/"+repo, f.Digest)
		if len(want) == 0 {
			t.Fatalf("%s: nothing attached at the source", f.Ref)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s at the target (-source +target):\n%s", f.Ref, diff)
		}
	}
	if stdout, stderr, code := runCLI(t, "", "verify", "--lock", out, "--insecure-registry", dst.Host); code != 0 {
		t.Errorf("verify --lock: exit %d\n%s\n%s", code, stdout, stderr)
	}
	// Without the flag, nothing but the images, and the lock claims none.
	bare := filepath.Join(dir, "bare.lock.yaml")
	if _, stderr, code := runCLI(t, "", "relocate", "-f", mf, "--repository", dst.Host+"/bare", "--insecure-registry", src.Host, "--insecure-registry", dst.Host, "--lock-output", bare, "--supply-chain=false"); code != 0 {
		t.Fatalf("relocate without --supply-chain: exit %d:\n%s", code, stderr)
	}
	if got := attachedAt(t, dst.Host, "bare/signed/tool", s.Image.Digest); len(got) != 0 {
		t.Errorf("artifacts pushed without --supply-chain: %v", got)
	}
}

// With nothing attached, discovery costs per source repository one tag
// list and one referrers API request (none after the registry said it has
// no API), and nothing per manifest.
func TestSupplyChainAddsFewRequests(t *testing.T) {
	var mu sync.Mutex
	counts := map[string]int{}
	h := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		kind := "other"
		switch {
		case strings.HasSuffix(r.URL.Path, "/tags/list"):
			kind = "tags"
		case strings.Contains(r.URL.Path, "/referrers/"):
			kind = "referrers"
		}
		mu.Lock()
		counts[kind]++
		mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	reg := &testutil.Registry{Host: strings.TrimPrefix(srv.URL, "http://"), Scheme: "http", Transport: http.DefaultTransport, Auth: authn.Anonymous}
	std := testutil.StandardSet(t, reg, 64<<10)
	dir := t.TempDir()
	var refs []string
	repos := map[string]bool{}
	for _, f := range std.All() {
		refs = append(refs, "image: "+f.Ref)
		repos[strings.SplitN(strings.SplitN(f.Ref, "/", 2)[1], ":", 2)[0]] = true
	}
	mf := filepath.Join(dir, "release.yaml")
	if err := os.WriteFile(mf, []byte(strings.Join(refs, "\n---\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	lockFile := filepath.Join(dir, "images.lock.yaml")
	resolve := func(flag string) map[string]int {
		mu.Lock()
		clear(counts)
		mu.Unlock()
		if _, stderr, code := runCLI(t, "", "resolve", "-f", mf, "--lock-output", lockFile, "--insecure-registry", reg.Host, flag); code != 0 {
			t.Fatalf("resolve %s: exit %d:\n%s", flag, code, stderr)
		}
		mu.Lock()
		defer mu.Unlock()
		return maps.Clone(counts)
	}
	// resolve too: one tag list per repository, the referrers API asked
	// once for the registry, nothing else added.
	rWithout, rWith := resolve("--supply-chain=false"), resolve("--supply-chain")
	t.Logf("resolve: requests without --supply-chain %v, with %v", rWithout, rWith)
	if rWith["other"] != rWithout["other"] || rWith["tags"] != len(repos) || rWith["referrers"] != 1 || rWithout["tags"]+rWithout["referrers"] != 0 {
		t.Errorf("resolve: requests without --supply-chain %v, with %v; want the same others, %d tag lists and 1 referrers request", rWithout, rWith, len(repos))
	}
	run := func(flag string) map[string]int {
		mu.Lock()
		clear(counts)
		mu.Unlock()
		args := []string{"pkg", "--lock", lockFile, "-o", filepath.Join(dir, "b"+strings.TrimPrefix(flag, "--")+".tar"), "--insecure-registry", reg.Host}
		args = append(args, flag)
		if _, stderr, code := runCLI(t, "", args...); code != 0 {
			t.Fatalf("pkg %s: exit %d:\n%s", flag, code, stderr)
		}
		mu.Lock()
		defer mu.Unlock()
		return maps.Clone(counts)
	}
	without, with := run("--supply-chain=false"), run("--supply-chain")
	t.Logf("requests without --supply-chain %v, with %v, %d repositories", without, with, len(repos))
	if with["other"] != without["other"] {
		t.Errorf("--supply-chain changed the other requests: %d, want %d", with["other"], without["other"])
	}
	if with["tags"] != len(repos) {
		t.Errorf("%d tag lists, want one per repository (%d)", with["tags"], len(repos))
	}
	if with["referrers"] > len(repos) {
		t.Errorf("%d referrers API requests, want at most one per repository (%d)", with["referrers"], len(repos))
	}
}

// artifactsByImage reads a lock's artifacts per image reference.
func artifactsByImage(t *testing.T, path string) map[string][]lock.Artifact {
	t.Helper()
	lf, err := lock.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]lock.Artifact{}
	for _, im := range lf.Images {
		out[im.Image] = im.Artifacts
	}
	return out
}

// TestResolveRecordsArtifacts: the lock resolve writes in CI records the
// artifacts pkg and relocate would find, so that the lock itself says what
// travels; --artifact-type keeps some, --supply-chain=false none, and a
// lock without them still makes a bundle a rerun recognises.
func TestResolveRecordsArtifacts(t *testing.T) {
	src, srcSrv := startMem(t, false)
	dst, _ := startMem(t, true)
	s := testutil.SignedSet(t, src)
	dir := t.TempDir()
	mf := filepath.Join(dir, "release.yaml")
	if err := os.WriteFile(mf, []byte("image: "+s.Index.Ref+"\n---\nimage: "+s.Image.Ref+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	resolve := func(name string, flags ...string) map[string][]lock.Artifact {
		t.Helper()
		path := filepath.Join(dir, name)
		args := append([]string{"resolve", "-f", mf, "--lock-output", path, "--insecure-registry", src.Host}, flags...)
		if _, stderr, code := runCLI(t, "", args...); code != 0 {
			t.Fatalf("resolve %v: exit %d:\n%s", flags, code, stderr)
		}
		return artifactsByImage(t, path)
	}

	got := resolve("images.lock.yaml")
	relocated := filepath.Join(dir, "relocated.lock.yaml")
	if _, stderr, code := runCLI(t, "", "relocate", "-f", mf, "--repository", dst.Host+"/mirror", "--insecure-registry", src.Host, "--insecure-registry", dst.Host, "--lock-output", relocated); code != 0 {
		t.Fatalf("relocate: exit %d:\n%s", code, stderr)
	}
	if diff := cmp.Diff(artifactsByImage(t, relocated), got); diff != "" {
		t.Errorf("resolve's artifacts differ from relocate's (-relocate +resolve):\n%s", diff)
	}
	n := 0
	for _, as := range got {
		n += len(as)
	}
	if n != len(s.Attached) {
		t.Errorf("resolve recorded %d artifacts, want %d", n, len(s.Attached))
	}

	// Signatures only: of the image, its platform and the other image,
	// not the attestation's, whose subject stays behind.
	var kinds []string
	for _, as := range resolve("sig.lock.yaml", "--artifact-type", "signature") {
		for _, a := range as {
			kinds = append(kinds, a.Kind)
		}
	}
	if want := []string{"signature", "signature", "signature"}; !slices.Equal(kinds, want) {
		t.Errorf("--artifact-type signature recorded %v, want %v", kinds, want)
	}
	for _, as := range resolve("spdx.lock.yaml", "--artifact-type", "application/spdx+json") {
		for _, a := range as {
			if a.Kind != "referrer" || a.ArtifactType != "application/spdx+json" {
				t.Errorf("--artifact-type application/spdx+json recorded %+v", a)
			}
		}
	}

	// None: the lock as before; pkg finds them, and a rerun with the
	// registry down takes them from the bundle.
	bare := filepath.Join(dir, "bare.lock.yaml")
	for _, as := range resolve("bare.lock.yaml", "--supply-chain=false") {
		if len(as) != 0 {
			t.Errorf("--supply-chain=false recorded %v", as)
		}
	}
	tarball := filepath.Join(dir, "bundle.tar")
	if _, stderr, code := runCLI(t, "", "pkg", "--lock", bare, "--bundle", tarball, "--insecure-registry", src.Host); code != 0 {
		t.Fatalf("pkg: exit %d:\n%s", code, stderr)
	}
	srcSrv.Close()
	if _, stderr, code := runCLI(t, "", "pkg", "--lock", bare, "--bundle", tarball, "--insecure-registry", src.Host); code != 0 || !strings.Contains(stderr, "nothing fetched") {
		t.Fatalf("pkg rerun with the source down: exit %d:\n%s", code, stderr)
	}
	if _, stderr, code := runCLI(t, "", "resolve", "-f", mf, "--supply-chain=false", "--artifact-type", "sig"); code != 2 || !strings.Contains(stderr, "--artifact-type") {
		t.Errorf("--artifact-type with --supply-chain=false: exit %d, want 2:\n%s", code, stderr)
	}
	if _, stderr, code := runCLI(t, "", "resolve", "-f", mf, "--artifact-type", "signatures"); code != 2 || !strings.Contains(stderr, "signatures") {
		t.Errorf("--artifact-type signatures: exit %d, want 2:\n%s", code, stderr)
	}
}

// TestArtifactTypeFilter: pkg and unpkg carry only the artifacts picked,
// and a rerun of pkg with another filter does not take the bundle for
// done.
func TestArtifactTypeFilter(t *testing.T) {
	src, _ := startMem(t, false)
	dst, _ := startMem(t, false)
	s := testutil.SignedSet(t, src)
	dir := t.TempDir()
	mf := filepath.Join(dir, "release.yaml")
	if err := os.WriteFile(mf, []byte("image: "+s.Index.Ref+"\n---\nimage: "+s.Image.Ref+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tarball := filepath.Join(dir, "bundle.tar")
	kinds := func() []string {
		t.Helper()
		stdout, _, code := runCLI(t, "", "inspect", "-i", tarball, "-o", "json")
		var sum bundle.Summary
		if err := json.Unmarshal([]byte(stdout), &sum); code != 0 || err != nil {
			t.Fatalf("inspect: exit %d, %v", code, err)
		}
		var out []string
		var walk func([]bundle.ArtifactSummary)
		walk = func(as []bundle.ArtifactSummary) {
			for _, a := range as {
				out = append(out, a.Kind)
				walk(a.Artifacts)
			}
		}
		for _, im := range sum.Images {
			walk(im.Artifacts)
		}
		slices.Sort(out)
		return out
	}
	pkg := func(flags ...string) string {
		t.Helper()
		args := append([]string{"pkg", "-f", mf, "--bundle", tarball, "--insecure-registry", src.Host}, flags...)
		_, stderr, code := runCLI(t, "", args...)
		if code != 0 {
			t.Fatalf("pkg %v: exit %d:\n%s", flags, code, stderr)
		}
		return stderr
	}
	pkg("--artifact-type", "att", "--artifact-type", "referrer")
	if got, want := kinds(), []string{"attestation", "referrer", "referrer"}; !slices.Equal(got, want) {
		t.Errorf("pkg --artifact-type att,referrer carries %v, want %v", got, want)
	}
	// Another filter: the bundle is made again, not taken for done.
	if stderr := pkg("--artifact-type", "signature"); strings.Contains(stderr, "nothing fetched") {
		t.Errorf("pkg with another filter took the bundle for done:\n%s", stderr)
	}
	if got, want := kinds(), []string{"signature", "signature", "signature"}; !slices.Equal(got, want) {
		t.Errorf("pkg --artifact-type signature carries %v, want %v", got, want)
	}
	if stderr := pkg("--artifact-type", "signature"); !strings.Contains(stderr, "nothing fetched") {
		t.Errorf("pkg rerun with the same filter fetched again:\n%s", stderr)
	}

	// unpkg of a full bundle, referrers only: the rest stays behind, and
	// unpkg says so.
	pkg()
	out := filepath.Join(dir, "relocated.lock.yaml")
	_, stderr, code := runCLI(t, "", "unpkg", "-i", tarball, "--repository", dst.Host+"/mirror", "--insecure-registry", dst.Host, "--artifact-type", "referrer", "--lock-output", out)
	if code != 0 {
		t.Fatalf("unpkg: exit %d:\n%s", code, stderr)
	}
	if !strings.Contains(stderr, "left out by --artifact-type") || !strings.Contains(stderr, "5 signature") {
		t.Errorf("unpkg says nothing of the 5 artifacts left out:\n%s", stderr)
	}
	got := attachedAt(t, dst.Host, "mirror/signed/tool", s.Image.Digest)
	if len(got) != 1 || !strings.Contains(got[0], " referrer ") {
		t.Errorf("at the target: %v, want the one referrer", got)
	}
	for _, as := range artifactsByImage(t, out) {
		for _, a := range as {
			if a.Kind != "referrer" {
				t.Errorf("relocated lock records %+v", a)
			}
		}
	}
	if stdout, stderr, code := runCLI(t, "", "verify", "--lock", out, "--insecure-registry", dst.Host); code != 0 {
		t.Errorf("verify --lock: exit %d\n%s\n%s", code, stdout, stderr)
	}
}

// TestVerifyFollowsReferrersPages: verify --lock reads every page of a
// referrers answer to find a referrer listed after someone else's, and
// refuses a Link header that loops.
func TestVerifyFollowsReferrersPages(t *testing.T) {
	src, _ := startMem(t, false)
	s := testutil.SignedSet(t, src)
	const foreignType = "application/vnd.example.foreign"
	var ours string
	for _, a := range s.Attached {
		if a.Kind == "referrer" && a.Subject == s.Image.Digest {
			ours = a.Artifact.Digest
		}
	}
	mem := registry.New(registry.WithReferrersSupport(true), registry.Logger(log.New(io.Discard, "", 0)))
	var loop atomic.Bool
	var pages atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.Path, "/referrers/") {
			mem.ServeHTTP(w, r)
			return
		}
		pages.Add(1)
		whole := httptest.NewRecorder()
		first := r.Clone(r.Context())
		first.URL.RawQuery = ""
		mem.ServeHTTP(whole, first)
		var idx v1.IndexManifest
		if whole.Code != http.StatusOK || json.Unmarshal(whole.Body.Bytes(), &idx) != nil {
			w.WriteHeader(whole.Code)
			return
		}
		// One entry a page, ferry's last.
		slices.SortStableFunc(idx.Manifests, func(a, b v1.Descriptor) int {
			return cmpBool(a.Digest.String() == ours, b.Digest.String() == ours)
		})
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		switch {
		case loop.Load():
			w.Header().Set("Link", fmt.Sprintf(`<%s>; rel="next"`, r.URL.Path))
		case n+1 < len(idx.Manifests):
			w.Header().Set("Link", fmt.Sprintf(`<%s?n=%d>; rel="next"`, r.URL.Path, n+1))
		}
		if n < len(idx.Manifests) {
			idx.Manifests = idx.Manifests[n : n+1]
		}
		w.Header().Set("Content-Type", string(idx.MediaType))
		json.NewEncoder(w).Encode(idx)
	}))
	t.Cleanup(srv.Close)
	dst := &testutil.Registry{Host: strings.TrimPrefix(srv.URL, "http://"), Scheme: "http", Transport: http.DefaultTransport, Auth: authn.Anonymous}
	subject := s.Image
	testutil.PushArtifact(t, dst, "mirror/signed/tool", testutil.ArtifactSpec{Subject: &subject, ArtifactType: foreignType, Payload: []byte("theirs")})

	dir := t.TempDir()
	mf := filepath.Join(dir, "release.yaml")
	if err := os.WriteFile(mf, []byte("image: "+s.Image.Ref+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "relocated.lock.yaml")
	if _, stderr, code := runCLI(t, "", "relocate", "-f", mf, "--repository", dst.Host+"/mirror", "--insecure-registry", src.Host, "--insecure-registry", dst.Host, "--lock-output", out); code != 0 {
		t.Fatalf("relocate: exit %d:\n%s", code, stderr)
	}
	pages.Store(0)
	if stdout, stderr, code := runCLI(t, "", "verify", "--lock", out, "--insecure-registry", dst.Host); code != 0 || pages.Load() < 2 {
		t.Errorf("verify --lock: exit %d after %d pages\n%s\n%s", code, pages.Load(), stdout, stderr)
	}
	loop.Store(true)
	if _, stderr, code := runCLI(t, "", "verify", "--lock", out, "--insecure-registry", dst.Host); code != 1 || !strings.Contains(stderr, "loop") {
		t.Errorf("verify --lock with a looping Link: exit %d, want 1 and a word on the loop:\n%s", code, stderr)
	}
}

// cmpBool orders false before true.
func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}
