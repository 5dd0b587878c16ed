package e2e

import (
	"net/http"
	"path/filepath"
	"testing"

	"github.com/ferry-dev/ferry/pkg/internal/testutil"
)

// TestCutManifestIsRetried has a proxy send half of a manifest's body and
// close the connection, once: resolve (an index fetched by digest) and pkg
// (a child manifest) each complete, with exactly one more GET of that
// manifest than an undisturbed run makes.
func TestCutManifestIsRetried(t *testing.T) {
	skipShort(t)
	t.Parallel()
	dir := t.TempDir()
	src, std := standardSource(t)
	sp := testutil.StartFaultProxy(t, src.Host)
	ims := images(std, sp.Host)
	insecure := []string{"--insecure-registry", sp.Host, "-q"}

	index := std.OCIIndex
	child := index.Children[1]
	for _, tt := range []struct {
		name string
		args []string
		// digest is the manifest cut; size its length.
		digest string
		size   int
	}{
		{"resolve", []string{"resolve", "-f", "release.yaml", "--lock-output", "resolved.lock.yaml", "-o", "pinned.yaml"}, index.Digest, len(index.Manifest)},
		{"pkg", []string{"pkg", "--lock", "images.lock.yaml", "-o", "bundle.tar"}, child.Digest, len(child.Manifest)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			writeFile(t, filepath.Join(dir, "release.yaml"), podsYAML(ims))
			writeLock(t, dir, "images.lock.yaml", ims)
			// An undisturbed run counts the GETs of the manifest.
			sp.Clear()
			sp.ResetStats()
			testutil.MustFerry(t, dir, append(append([]string(nil), tt.args...), insecure...)...)
			base := sp.Count(http.MethodGet, testutil.KindManifest, tt.digest)
			if base == 0 {
				t.Fatalf("%s never fetched %s: the test cuts nothing", tt.name, tt.digest)
			}

			sp.ResetStats()
			cut := sp.Add(testutil.Fault{Method: http.MethodGet, Kind: testutil.KindManifest, PathContains: tt.digest, First: 1, CutAfter: int64(tt.size / 2)})
			args := append([]string(nil), tt.args...)
			if tt.name == "pkg" {
				args[len(args)-1] = "again.tar" // a new bundle, fetched anew
			}
			testutil.MustFerry(t, dir, append(args, insecure...)...)
			if sp.Hits(cut) != 1 {
				t.Errorf("the cut hit %d GETs, want 1", sp.Hits(cut))
			}
			if got := sp.Count(http.MethodGet, testutil.KindManifest, tt.digest); got != base+1 {
				t.Errorf("%d GETs of %s with one cut, %d without; want exactly one more", got, tt.digest, base)
			}
		})
	}
	testutil.MustFerry(t, dir, "verify", "-i", "again.tar", "-q")
}
