package bundle_test

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/pkg/internal/testutil"
	"github.com/ferry-dev/ferry/pkg/lock"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// TestOpensAnOCIArchiveFromSkopeo: a plain OCI-layout tar written by
// another tool opens too (docs/bundle.md). skopeo copies a multi-platform
// OCI index from a registry into an oci-archive; ferry inspects and
// verifies it and unpkgs it into another registry, where skopeo finds every
// manifest with its original digest.
func TestOpensAnOCIArchiveFromSkopeo(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: skipped with -short")
	}
	skopeo, err := exec.LookPath("skopeo")
	if err != nil {
		t.Fatal("skopeo not found: apt-get install -y skopeo")
	}
	src, air := testutil.StartRegistry(t), testutil.StartRegistry(t)
	testutil.PushIndex(t, src, "team/app", "v1", testutil.IndexSpec{OCI: true, Images: []testutil.ImageSpec{
		{OCI: true, Platform: v1.Platform{OS: "linux", Architecture: "amd64"}, Layers: []v1.Layer{testutil.RandomLayer(1, 64<<10), testutil.RandomLayer(2, 4<<10)}},
		{OCI: true, Platform: v1.Platform{OS: "linux", Architecture: "arm64"}, Layers: []v1.Layer{testutil.RandomLayer(3, 32<<10)}, Odd: true},
	}})
	dir := t.TempDir()
	archive := filepath.Join(dir, "skopeo.tar")
	const name = "example.com/team/app:v1"
	cmd := exec.CommandContext(t.Context(), skopeo, "copy", "--quiet", "--all", "--src-tls-verify=false",
		"docker://"+src.Ref("team/app:v1"), "oci-archive:"+archive+":"+name)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("skopeo copy to oci-archive: %v: %s", err, b)
	}

	// skopeo writes the manifests anew (digests change, as NOTES.md says
	// of its oci: transport): the archive's own bytes are what ferry must
	// carry, and skopeo reading the archive is the judge of them.
	raw, err := exec.CommandContext(t.Context(), skopeo, "inspect", "--raw", "oci-archive:"+archive+":"+name).Output()
	if err != nil {
		t.Fatalf("skopeo inspect --raw oci-archive: %v: %s", err, stderrOf(err))
	}
	want := sha(raw)
	var index v1.IndexManifest
	if err := json.Unmarshal(raw, &index); err != nil {
		t.Fatal(err)
	}
	var children []string
	for _, m := range index.Manifests {
		children = append(children, m.Digest.String())
	}
	if len(children) != 2 {
		t.Fatalf("skopeo's index lists %d manifests, want 2", len(children))
	}

	r := mustFerry(t, dir, "inspect", "-i", archive)
	if !strings.Contains(r.Stdout, name) || !strings.Contains(r.Stdout, want) {
		t.Errorf("ferry inspect -i of skopeo's archive:\n%s\nwant %s with %s", r.Stdout, name, want)
	}
	mustFerry(t, dir, "verify", "-i", archive)

	out := filepath.Join(dir, "relocated.lock.yaml")
	mustFerry(t, dir, "unpkg", "-i", archive, "--repository", air.Host+"/air", "--insecure-registry", air.Host, "--lock-output", out)
	lf, err := lock.Read(out)
	if err != nil {
		t.Fatal(err)
	}
	im, ok := lf.Lookup(name)
	if !ok || !strings.HasSuffix(im.Relocated, "@"+want) {
		t.Fatalf("lock entry for %s: %+v, want one relocated to a digest %s", name, im, want)
	}
	repo := strings.TrimSuffix(im.Relocated, "@"+want)
	if got := testutil.SkopeoDigest(t, im.Relocated, true); got != want {
		t.Errorf("skopeo finds %s hashing to %s, want %s", im.Relocated, got, want)
	}
	if got := testutil.SkopeoDigest(t, repo+":v1", true); got != want {
		t.Errorf("skopeo finds %s:v1 hashing to %s, want %s", repo, got, want)
	}
	for _, c := range children {
		if got := testutil.SkopeoDigest(t, repo+"@"+c, true); got != c {
			t.Errorf("child %s at the target hashes to %s", c, got)
		}
	}
}
