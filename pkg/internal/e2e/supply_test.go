package e2e

import (
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/pkg/internal/testutil"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// TestCosignVerifiesAfterPkgUnpkg signs and attests, with the real cosign
// CLI, a multi-arch index, one of its children and a plain image in
// Debian's registry (no referrers API); carries them with ferry pkg and
// unpkg into a second registry that never saw the source; and lets cosign
// verify and verify-attestation judge the copies there.
func TestCosignVerifiesAfterPkgUnpkg(t *testing.T) {
	skipShort(t)
	testutil.Cosign(t)
	src, dst := testutil.StartRegistry(t), testutil.StartRegistry(t)
	img := func(arch string, seed uint64) testutil.ImageSpec {
		return testutil.ImageSpec{OCI: true, Platform: v1.Platform{OS: "linux", Architecture: arch}, Layers: []v1.Layer{testutil.RandomLayer(seed, 32<<10)}}
	}
	index := testutil.PushIndex(t, src, "team/app", "v1", testutil.IndexSpec{OCI: true, Images: []testutil.ImageSpec{img("amd64", 1), img("arm64", 2)}})
	tool := testutil.PushImage(t, src, "team/tool", "v1", img("amd64", 3))
	child := index.Children[0]

	dir := t.TempDir()
	env := []string{"COSIGN_PASSWORD=ferry-test", "COSIGN_YES=true"}
	testutil.RunCosign(t, dir, env, "generate-key-pair")
	predicate := filepath.Join(dir, "predicate.json")
	if err := os.WriteFile(predicate, []byte(`{"builder":{"id":"ferry-e2e"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	insecure := []string{"--allow-http-registry", "--allow-insecure-registry"}
	signed := []string{
		src.Host + "/team/app@" + index.Digest,
		src.Host + "/team/app@" + child.Digest,
		src.Host + "/team/tool@" + tool.Digest,
	}
	for _, ref := range signed {
		testutil.RunCosign(t, dir, env, append([]string{"sign", "--key", "cosign.key", "--tlog-upload=false", ref}, insecure...)...)
	}
	testutil.RunCosign(t, dir, env, append([]string{"attest", "--key", "cosign.key", "--tlog-upload=false", "--type", "custom", "--predicate", predicate, signed[0]}, insecure...)...)

	manifests := filepath.Join(dir, "release.yaml")
	if err := os.WriteFile(manifests, []byte("image: "+src.Host+"/team/app:v1\n---\nimage: "+src.Host+"/team/tool:v1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(dir, "bundle.tar")
	testutil.MustFerry(t, dir, "pkg", "-f", manifests, "-o", bundle, "--insecure-registry", src.Host, "--supply-chain")
	insp := testutil.MustFerry(t, dir, "inspect", "-i", bundle)
	if !strings.Contains(insp.Stdout, "attestation") || strings.Count(insp.Stdout, "signature") < 3 {
		t.Errorf("inspect shows no artifact tree with an attestation and three signatures:\n%s", insp.Stdout)
	}
	out := filepath.Join(dir, "relocated.lock.yaml")
	testutil.MustFerry(t, dir, "unpkg", "-i", bundle, "--repository", dst.Host+"/relocated", "--insecure-registry", dst.Host, "--supply-chain", "--lock-output", out)
	testutil.MustFerry(t, dir, "verify", "--lock", out, "--insecure-registry", dst.Host)

	verify := []string{"--key", "cosign.pub", "--insecure-ignore-tlog=true", "--allow-http-registry", "--allow-insecure-registry"}
	for _, ref := range []string{
		dst.Host + "/relocated/team/app@" + index.Digest,
		dst.Host + "/relocated/team/app@" + child.Digest,
		dst.Host + "/relocated/team/tool@" + tool.Digest,
	} {
		testutil.RunCosign(t, dir, env, append([]string{"verify"}, append(verify, ref)...)...)
	}
	testutil.RunCosign(t, dir, env, append([]string{"verify-attestation", "--type", "custom"}, append(verify, dst.Host+"/relocated/team/app@"+index.Digest)...)...)

	// cosign tree lists the same artifacts at both ends.
	for _, at := range []string{"/team/app@" + index.Digest, "/team/app@" + child.Digest, "/team/tool@" + tool.Digest} {
		before := testutil.RunCosign(t, dir, env, "tree", "--allow-http-registry", "--allow-insecure-registry", src.Host+at)
		after := testutil.RunCosign(t, dir, env, "tree", "--allow-http-registry", "--allow-insecure-registry", dst.Host+"/relocated"+at)
		// cosign prints the groups in map order: compare the lines sorted.
		sorted := func(s string) string {
			lines := strings.Split(s, "\n")
			slices.Sort(lines)
			return strings.Join(lines, "\n")
		}
		before = sorted(strings.ReplaceAll(before, src.Host+"/", "REG/"))
		after = sorted(strings.ReplaceAll(after, dst.Host+"/relocated/", "REG/"))
		if before != after || !strings.Contains(after, "sha256:") {
			t.Errorf("cosign tree of %s differs:\nsource:\n%s\ntarget:\n%s", at, before, after)
		}
	}

	// The other platform was never signed: cosign must refuse it, or the
	// checks above prove nothing.
	other := dst.Host + "/relocated/team/app@" + index.Children[1].Digest
	if !testutil.CosignFails(t, dir, env, append([]string{"verify"}, append(verify, other)...)...) {
		t.Errorf("cosign verify passed on %s, which was never signed", other)
	}
}

// TestSupplyChainDistribution carries the signed set between two of
// Debian's registries (no referrers API: the tag schema on both sides),
// with someone else's referrer already listed at the target, and checks
// that every artifact arrives under its tag or listed for its subject, and
// that the foreign referrer stays listed.
func TestSupplyChainDistribution(t *testing.T) {
	skipShort(t)
	src, dst := testutil.StartRegistry(t), testutil.StartRegistry(t)
	s := testutil.SignedSet(t, src)
	// Someone else's referrer of the index is listed at the target already.
	sub := s.Index
	foreign := testutil.PushArtifact(t, dst, "relocated/signed/app", testutil.ArtifactSpec{Subject: &sub, ArtifactType: "application/vnd.example.foreign", Payload: []byte("theirs")})
	testutil.PushReferrersIndex(t, dst, "relocated/signed/app", s.Index.Digest, foreign)

	dir := t.TempDir()
	manifests := filepath.Join(dir, "release.yaml")
	if err := os.WriteFile(manifests, []byte("image: "+s.Index.Ref+"\n---\nimage: "+s.Image.Ref+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(dir, "bundle.tar")
	testutil.MustFerry(t, dir, "pkg", "-f", manifests, "-o", bundle, "--insecure-registry", src.Host, "--supply-chain")
	out := filepath.Join(dir, "relocated.lock.yaml")
	testutil.MustFerry(t, dir, "unpkg", "-i", bundle, "--repository", dst.Host+"/relocated", "--insecure-registry", dst.Host, "--supply-chain", "--lock-output", out)
	testutil.MustFerry(t, dir, "verify", "--lock", out, "--insecure-registry", dst.Host)

	for _, a := range s.Attached {
		repo := "relocated/signed/tool"
		if strings.Contains(a.Artifact.Ref, "/signed/app") {
			repo = "relocated/signed/app"
		}
		if a.Tag != "" {
			if got := testutil.TagDigest(t, dst, repo, a.Tag); got != a.Artifact.Digest {
				t.Errorf("%s:%s names %q at the target, want %s", repo, a.Tag, got, a.Artifact.Digest)
			}
			continue
		}
		listed := testutil.ReferrersIndex(t, dst, repo, a.Subject)
		if !slices.Contains(listed, a.Artifact.Digest) {
			t.Errorf("referrer %s not listed for %s in %s: %v", a.Artifact.Digest, a.Subject, repo, listed)
		}
		if a.Subject == s.Index.Digest && !slices.Contains(listed, foreign.Digest) {
			t.Errorf("the foreign referrer %s was dropped from %s's index: %v", foreign.Digest, a.Subject, listed)
		}
	}
}

// TestOrasDiscoversAfterPkgUnpkg attaches OCI 1.1 referrers with the real
// oras CLI in Debian's registry (oras keeps the referrers tag schema
// there), carries them with ferry, and lets oras discover judge the
// copies: in a second Debian registry (ferry keeps the tag schema) and in
// go-containerregistry's registry with the referrers API.
func TestOrasDiscoversAfterPkgUnpkg(t *testing.T) {
	skipShort(t)
	testutil.Oras(t)
	src := testutil.StartRegistry(t)
	img := func(arch string, seed uint64) testutil.ImageSpec {
		return testutil.ImageSpec{OCI: true, Platform: v1.Platform{OS: "linux", Architecture: arch}, Layers: []v1.Layer{testutil.RandomLayer(seed, 16<<10)}}
	}
	index := testutil.PushIndex(t, src, "team/app", "v1", testutil.IndexSpec{OCI: true, Images: []testutil.ImageSpec{img("amd64", 11), img("arm64", 12)}})
	child := index.Children[1]

	dir := t.TempDir()
	sbom := filepath.Join(dir, "sbom.spdx.json")
	if err := os.WriteFile(sbom, []byte(`{"spdxVersion":"SPDX-2.3"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	// oras attach prints the digest it pushed; --format go-template keeps
	// it to that.
	attach := func(subject, artifactType string) string {
		out := strings.TrimSpace(testutil.RunOras(t, dir, "attach", "--plain-http", "--artifact-type", artifactType, "--format", "go-template={{.digest}}", subject, "sbom.spdx.json:application/spdx+json"))
		if !strings.HasPrefix(out, "sha256:") || len(out) != 71 {
			t.Fatalf("oras attach printed %q, want the digest it pushed", out)
		}
		return out
	}
	want := map[string][]string{
		index.Digest: {attach(src.Host+"/team/app@"+index.Digest, "application/spdx+json")},
		child.Digest: {attach(src.Host+"/team/app@"+child.Digest, "application/vnd.example.scan+json")},
	}

	manifests := filepath.Join(dir, "release.yaml")
	if err := os.WriteFile(manifests, []byte("image: "+src.Host+"/team/app:v1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(dir, "bundle.tar")
	testutil.MustFerry(t, dir, "pkg", "-f", manifests, "-o", bundle, "--insecure-registry", src.Host)

	debian := testutil.StartRegistry(t)
	api := httptest.NewServer(registry.New(registry.WithReferrersSupport(true), registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(api.Close)
	for _, host := range []string{debian.Host, strings.TrimPrefix(api.URL, "http://")} {
		testutil.MustFerry(t, dir, "unpkg", "-i", bundle, "--repository", host+"/relocated", "--insecure-registry", host)
		for subject, digests := range want {
			out := testutil.RunOras(t, dir, "discover", "--plain-http", "--format", "json", host+"/relocated/team/app@"+subject)
			for _, d := range digests {
				if !strings.Contains(out, d) {
					t.Errorf("oras discover at %s does not list %s for %s:\n%s", host, d, subject, out)
				}
			}
		}
	}

	// The CI flow with a filter: resolve records only the SPDX referrer
	// (the child's scan is another artifactType), and relocate from that
	// lock carries it alone.
	lockFile := filepath.Join(dir, "images.lock.yaml")
	testutil.MustFerry(t, dir, "resolve", "-f", manifests, "--lock-output", lockFile, "--artifact-type", "application/spdx+json", "--insecure-registry", src.Host)
	raw, err := os.ReadFile(lockFile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), want[index.Digest][0]) || strings.Contains(string(raw), want[child.Digest][0]) {
		t.Errorf("resolve --artifact-type application/spdx+json: the lock does not record the SBOM alone:\n%s", raw)
	}
	testutil.MustFerry(t, dir, "relocate", "--lock", lockFile, "--repository", debian.Host+"/filtered", "--artifact-type", "application/spdx+json", "--insecure-registry", src.Host, "--insecure-registry", debian.Host)
	if out := testutil.RunOras(t, dir, "discover", "--plain-http", "--format", "json", debian.Host+"/filtered/team/app@"+index.Digest); !strings.Contains(out, want[index.Digest][0]) {
		t.Errorf("oras discover after relocate --artifact-type does not list the SBOM %s:\n%s", want[index.Digest][0], out)
	}
	if out := testutil.RunOras(t, dir, "discover", "--plain-http", "--format", "json", debian.Host+"/filtered/team/app@"+child.Digest); strings.Contains(out, want[child.Digest][0]) {
		t.Errorf("oras discover after relocate --artifact-type lists the scan %s, which was left out:\n%s", want[child.Digest][0], out)
	}
}
