package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/pkg/internal/testutil"
)

// TestTamperedBundle damages a bundle after pkg wrote it: a flipped byte in
// a layer, in a child manifest, and a truncated file. verify -i names what
// is damaged and the images using it; unpkg refuses and tags nothing.
func TestTamperedBundle(t *testing.T) {
	skipShort(t)
	t.Parallel()
	dir := t.TempDir()
	src, std := standardSource(t)
	ims := images(std, src.Host)
	writeLock(t, dir, "images.lock.yaml", ims)
	testutil.MustFerry(t, dir, "pkg", "--lock", "images.lock.yaml", "-o", "bundle.tar", "--insecure-registry", src.Host, "-q")
	clean, err := os.ReadFile(filepath.Join(dir, "bundle.tar"))
	if err != nil {
		t.Fatal(err)
	}
	air := testutil.StartRegistry(t)
	byRepo := map[string]image{}
	for _, im := range ims {
		byRepo[im.repo] = im
	}

	// flip writes a copy of the bundle with one byte of digest's content
	// flipped.
	flip := func(t *testing.T, name, digest string) string {
		b := append([]byte(nil), clean...)
		off, size := blobOffset(t, b, digest)
		b[off+size/2] ^= 0xff
		writeFile(t, filepath.Join(dir, name), b)
		return name
	}
	// refused runs verify -i and unpkg on a damaged bundle: both exit 1,
	// naming want; no manifest lands under prefix, and skopeo finds no tag
	// or digest of the images in bad.
	refused := func(t *testing.T, bundle, prefix string, bad []image, want ...string) {
		t.Helper()
		v := testutil.RunFerry(t, dir, nil, "verify", "-i", bundle)
		if v.Code != 1 {
			t.Errorf("verify -i %s: exit %d, want 1", bundle, v.Code)
		}
		lockOut := prefix + ".lock.yaml"
		u := testutil.RunFerry(t, dir, nil, "unpkg", "-i", bundle, "--repository", air.Host+"/"+prefix, "--lock-output", lockOut, "--insecure-registry", air.Host)
		if u.Code != 1 || len(u.Lines()) != 1 {
			t.Errorf("unpkg -i %s: exit %d, stderr %q; want 1 and one line", bundle, u.Code, u.Stderr)
		}
		for _, w := range want {
			if !strings.Contains(v.Stderr, w) {
				t.Errorf("verify -i %s: stderr does not name %s:\n%s", bundle, w, v.Stderr)
			}
		}
		if !strings.Contains(u.Stderr, want[0]) {
			t.Errorf("unpkg -i %s: stderr does not name %s:\n%s", bundle, want[0], u.Stderr)
		}
		if exists(t, filepath.Join(dir, lockOut)) {
			t.Errorf("unpkg -i %s wrote %s", bundle, lockOut)
		}
		st := readState(t, air.StorageDir)
		for k := range st.manifests {
			if strings.HasPrefix(k, prefix+"/") {
				t.Errorf("unpkg -i %s put manifest %s at the target", bundle, k)
			}
		}
		for _, im := range bad {
			repo := air.Host + "/" + prefix + "/" + im.repo
			for _, ref := range []string{repo + ":" + im.tag, repo + "@" + im.f.Digest} {
				if !skopeoMissing(t, ref) {
					t.Errorf("unpkg of a damaged bundle put %s at the target", ref)
				}
			}
		}
	}

	t.Run("layer", func(t *testing.T) {
		web := byRepo["team/web"]
		layer := web.f.Blobs[3] // team/web's own layer, in no other image
		refused(t, flip(t, "layer.tar", layer), "layer", []image{web}, layer, web.written)
	})

	t.Run("child manifest", func(t *testing.T) {
		tekton := byRepo["tekton/controller"]
		child := tekton.f.Children[1].Digest
		refused(t, flip(t, "manifest.tar", child), "manifest", []image{tekton}, child, tekton.written)
	})

	t.Run("truncated", func(t *testing.T) {
		writeFile(t, filepath.Join(dir, "short.tar"), clean[:len(clean)/2])
		refused(t, "short.tar", "short", nil, "short.tar")
	})
}
