package e2e

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/pkg/internal/testutil"
	"github.com/ferry-dev/ferry/pkg/lock"
)

// retarBundle writes a copy of the bundle b to dir/name after edit changed
// its lock (returning nil drops the lock), as a hand edit or another tool
// would.
func retarBundle(t *testing.T, b []byte, dir, name string, edit func(*lock.File) *lock.File) string {
	t.Helper()
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if h.Name == "ferry.lock.yaml" {
			lf, err := lock.Parse(body)
			if err != nil {
				t.Fatal(err)
			}
			if lf = edit(lf); lf == nil {
				continue
			}
			var nb bytes.Buffer
			if err := lf.Encode(&nb, lock.FormatFerry); err != nil {
				t.Fatal(err)
			}
			body = nb.Bytes()
			h.Size = int64(len(body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, name), out.Bytes())
	return name
}

// TestBundleLockContradictsIndex edits the lock inside a bundle pkg wrote
// (two images' digests swapped, an image renamed, the lock removed, a media
// type changed): verify -i, inspect and unpkg each refuse it in one line
// naming the image and the field, and the registry receives nothing: no
// manifest, no blob.
func TestBundleLockContradictsIndex(t *testing.T) {
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
	at := func(lf *lock.File, written string) *lock.Image {
		for i := range lf.Images {
			if lf.Images[i].Image == written {
				return &lf.Images[i]
			}
		}
		t.Fatalf("%s not in the bundle's lock", written)
		return nil
	}
	oci, list := ims[0], ims[1]
	for _, im := range ims {
		switch im.f.Digest {
		case std.OCIIndex.Digest:
			oci = im
		case std.ManifestList.Digest:
			list = im
		}
	}

	tests := []struct {
		name string
		edit func(*lock.File) *lock.File
		// want are what the one error line must say.
		want []string
	}{
		{"swapped digests", func(lf *lock.File) *lock.File {
			a, b := at(lf, oci.written), at(lf, list.written)
			a.Digest, b.Digest = b.Digest, a.Digest
			a.Resolved, b.Resolved = b.Resolved, a.Resolved
			a.MediaType, b.MediaType = b.MediaType, a.MediaType
			a.Size, b.Size = b.Size, a.Size
			return lf
		}, []string{"digest", list.f.Digest, oci.f.Digest}},
		{"renamed image", func(lf *lock.File) *lock.File {
			at(lf, list.written).Image = src.Host + "/library/nginx:renamed"
			return lf
		}, []string{"ref name", "nginx:renamed"}},
		{"no lock", func(*lock.File) *lock.File { return nil }, []string{"ferry.lock.yaml says nothing"}},
		{"media type", func(lf *lock.File) *lock.File {
			at(lf, list.written).MediaType = "application/vnd.oci.image.index.v1+json"
			return lf
		}, []string{"mediaType", list.written, "application/vnd.docker.distribution.manifest.list.v2+json"}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := retarBundle(t, clean, dir, "edited"+string(rune('0'+i))+".tar", tt.edit)
			prefix := "edited" + string(rune('0'+i))
			lockOut := prefix + ".lock.yaml"
			for _, args := range [][]string{
				{"verify", "-i", name},
				{"inspect", "-i", name},
				{"unpkg", "-i", name, "--repository", air.Host + "/" + prefix, "--lock-output", lockOut, "--insecure-registry", air.Host},
			} {
				r := testutil.RunFerry(t, dir, nil, args...)
				if r.Code != 1 || len(r.Lines()) != 1 || r.Stdout != "" {
					t.Errorf("ferry %s: exit %d, stdout %q, stderr %q; want exit 1, nothing on stdout, one line", args[0], r.Code, r.Stdout, r.Stderr)
					continue
				}
				for _, w := range append(tt.want, name, "altered", "another tool") {
					if !strings.Contains(r.Stderr, w) {
						t.Errorf("ferry %s: %q does not say %q", args[0], r.Stderr, w)
					}
				}
			}
			if exists(t, filepath.Join(dir, lockOut)) {
				t.Errorf("unpkg wrote %s", lockOut)
			}
		})
	}
	st := readState(t, air.StorageDir)
	if len(st.manifests) != 0 || len(st.blobs) != 0 || len(st.tags) != 0 {
		t.Errorf("the registry received %d manifests, %d blobs, %d tags from bundles it should have refused: %v", len(st.manifests), len(st.blobs), len(st.tags), st.manifests)
	}

	t.Run("trailing bytes", func(t *testing.T) {
		writeFile(t, filepath.Join(dir, "tail.tar"), append(append([]byte(nil), clean...), "carried on a stick\n"...))
		v := testutil.RunFerry(t, dir, nil, "verify", "-i", "tail.tar", "-q")
		if v.Code != 1 || !strings.Contains(v.Stderr, "19 bytes after the end of the tar archive") || len(v.Lines()) != 1 {
			t.Errorf("verify -i: exit %d, stderr %q; want 1 and one line saying 19 bytes follow the archive", v.Code, v.Stderr)
		}
		in := testutil.MustFerry(t, dir, "inspect", "-i", "tail.tar")
		if !strings.Contains(in.Stderr, "19 bytes after the end of the tar archive") {
			t.Errorf("inspect: no warning about the trailing bytes: %q", in.Stderr)
		}
		u := testutil.MustFerry(t, dir, "unpkg", "-i", "tail.tar", "--repository", air.Host+"/tail", "--insecure-registry", air.Host, "-q")
		if !strings.Contains(u.Stderr, "19 bytes after the end of the tar archive") {
			t.Errorf("unpkg: no warning about the trailing bytes: %q", u.Stderr)
		}
	})
}
