package bundle

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/pkg/lock"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// tarFile is one entry of a bundle being rewritten.
type tarFile struct {
	hdr  *tar.Header
	body []byte
}

// retar rewrites the bundle at src into dst after edit has changed its
// entries (nil content drops one), as someone editing a bundle by hand or
// another tool would: the headers are written anew.
func retar(t *testing.T, src, dst string, edit func(files map[string][]byte)) {
	t.Helper()
	f, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var order []tarFile
	files := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		order = append(order, tarFile{hdr: h, body: b})
		files[h.Name] = b
	}
	edit(files)
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	for _, e := range order {
		b, ok := files[e.hdr.Name]
		if !ok || (b == nil && e.hdr.Typeflag != tar.TypeDir) {
			continue
		}
		h := *e.hdr
		h.Size = int64(len(b))
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// editLock changes the lock inside files.
func editLock(t *testing.T, files map[string][]byte, f func(*lock.File)) {
	t.Helper()
	lf, err := lock.Parse(files[LockFile])
	if err != nil {
		t.Fatal(err)
	}
	f(lf)
	var b bytes.Buffer
	if err := lf.Encode(&b, lock.FormatFerry); err != nil {
		t.Fatal(err)
	}
	files[LockFile] = b.Bytes()
}

// editIndex changes index.json inside files.
func editIndex(t *testing.T, files map[string][]byte, f func(*v1.IndexManifest)) {
	t.Helper()
	var idx v1.IndexManifest
	if err := json.Unmarshal(files[IndexFile], &idx); err != nil {
		t.Fatal(err)
	}
	f(&idx)
	b, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	files[IndexFile] = b
}

func indexOf(t *testing.T, lf *lock.File, name string) int {
	t.Helper()
	for i, im := range lf.Images {
		if im.Image == name {
			return i
		}
	}
	t.Fatalf("%s not in the lock", name)
	return -1
}

// TestLockMustAgreeWithIndex tampers with the lock or index.json of a
// bundle ferry wrote: Open, Verify and Inspect refuse each with a
// *LockMismatchError naming the image and the field.
func TestLockMustAgreeWithIndex(t *testing.T) {
	w := newWorld(t)
	// The lock records the index's children, as resolve does.
	oci := w.std.OCIIndex
	i := indexOf(t, w.lock, oci.Ref)
	for _, c := range oci.Children {
		w.lock.Images[i].Platforms = append(w.lock.Images[i].Platforms, lock.Platform{Platform: c.Platform.String(), Digest: c.Digest, MediaType: c.MediaType, Size: int64(len(c.Manifest))})
	}
	dir := t.TempDir()
	clean := filepath.Join(dir, "bundle.tar")
	write(t, w, clean, w.entries)
	if r, err := Open(clean); err != nil {
		t.Fatalf("the bundle as written: %v", err)
	} else {
		r.Close()
	}
	list, nested := w.std.ManifestList, w.std.Nested

	tests := []struct {
		name      string
		edit      func(map[string][]byte)
		image     string
		field     string
		lockSays  string
		indexSays string
	}{
		{
			name: "two images' digests swapped in the lock",
			edit: func(files map[string][]byte) {
				editLock(t, files, func(lf *lock.File) {
					a, b := &lf.Images[indexOf(t, lf, oci.Ref)], &lf.Images[indexOf(t, lf, list.Ref)]
					a.Digest, b.Digest = b.Digest, a.Digest
					a.Resolved, b.Resolved = b.Resolved, a.Resolved
					a.MediaType, b.MediaType = b.MediaType, a.MediaType
					a.Platforms = nil
				})
			},
			image: oci.Ref, field: "digest", lockSays: list.Digest, indexSays: oci.Digest,
		},
		{
			name: "an image renamed in the lock",
			edit: func(files map[string][]byte) {
				editLock(t, files, func(lf *lock.File) { lf.Images[indexOf(t, lf, list.Ref)].Image = "example.com/renamed:v1" })
			},
			image: "example.com/renamed:v1", field: "ref name", lockSays: `"example.com/renamed:v1"`, indexSays: `is there as "` + list.Ref + `"`,
		},
		{
			name: "an image renamed in index.json",
			edit: func(files map[string][]byte) {
				editIndex(t, files, func(idx *v1.IndexManifest) {
					for _, d := range idx.Manifests {
						if d.Annotations[AnnotationRefName] == nested.Ref {
							d.Annotations[AnnotationRefName] = "example.com/other:v1"
						}
					}
				})
			},
			image: nested.Ref, field: "ref name", indexSays: `is there as "example.com/other:v1"`,
		},
		{
			name:  "no lock in a bundle ferry wrote",
			edit:  func(files map[string][]byte) { files[LockFile] = nil },
			field: "lock", lockSays: "nothing",
		},
		{
			name: "a media type changed in the lock",
			edit: func(files map[string][]byte) {
				editLock(t, files, func(lf *lock.File) {
					lf.Images[indexOf(t, lf, list.Ref)].MediaType = "application/vnd.oci.image.index.v1+json"
				})
			},
			image: list.Ref, field: "mediaType", lockSays: "application/vnd.oci.image.index.v1+json", indexSays: list.MediaType,
		},
		{
			name: "a media type changed in index.json",
			edit: func(files map[string][]byte) {
				editIndex(t, files, func(idx *v1.IndexManifest) {
					for j, d := range idx.Manifests {
						if d.Annotations[AnnotationRefName] == list.Ref {
							idx.Manifests[j].MediaType = "application/vnd.oci.image.index.v1+json"
						}
					}
				})
			},
			image: list.Ref, field: "mediaType", lockSays: list.MediaType, indexSays: "application/vnd.oci.image.index.v1+json",
		},
		{
			name: "an image in index.json the lock lacks",
			edit: func(files map[string][]byte) {
				editIndex(t, files, func(idx *v1.IndexManifest) {
					d := idx.Manifests[0]
					d.Annotations = map[string]string{AnnotationRefName: "example.com/extra:v1"}
					idx.Manifests = append(idx.Manifests, d)
				})
			},
			image: "example.com/extra:v1", field: "ref name", lockSays: "no entry",
		},
		{
			name: "an index's children swapped in the lock",
			edit: func(files map[string][]byte) {
				editLock(t, files, func(lf *lock.File) {
					p := lf.Images[indexOf(t, lf, oci.Ref)].Platforms
					p[0].Digest, p[1].Digest = p[1].Digest, p[0].Digest
				})
			},
			image: oci.Ref, field: "platforms[0].digest", lockSays: oci.Children[1].Digest, indexSays: oci.Children[0].Digest,
		},
		{
			name: "a child missing from the lock",
			edit: func(files map[string][]byte) {
				editLock(t, files, func(lf *lock.File) {
					im := &lf.Images[indexOf(t, lf, oci.Ref)]
					im.Platforms = im.Platforms[:2]
				})
			},
			image: oci.Ref, field: "platforms", lockSays: "2 children", indexSays: "an index of 3 children",
		},
		{
			name: "the lock edited where index.json cannot tell",
			edit: func(files map[string][]byte) {
				editLock(t, files, func(lf *lock.File) { lf.Images[0].Sources = []lock.Source{{File: "elsewhere.yaml"}} })
			},
			field: "lock digest", indexSays: AnnotationLockDigest,
		},
	}
	for n, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, "tampered-"+string(rune('a'+n))+".tar")
			retar(t, clean, path, tt.edit)
			check := func(what string, err error) {
				t.Helper()
				var me *LockMismatchError
				if !errors.As(err, &me) {
					t.Fatalf("%s: err = %v, want a *LockMismatchError", what, err)
				}
				if me.Image != tt.image || me.Field != tt.field {
					t.Errorf("%s: image %q field %q, want image %q field %q", what, me.Image, me.Field, tt.image, tt.field)
				}
				if !strings.Contains(me.Lock, tt.lockSays) || !strings.Contains(me.Index, tt.indexSays) {
					t.Errorf("%s: lock says %q, index.json says %q; want them to say %q and %q", what, me.Lock, me.Index, tt.lockSays, tt.indexSays)
				}
				if !errors.Is(err, ErrInvalid) {
					t.Errorf("%s: err is not ErrInvalid", what)
				}
				msg := err.Error()
				if strings.Contains(msg, "\n") || !strings.Contains(msg, "altered") || !strings.Contains(msg, "another tool") {
					t.Errorf("%s: %q is not one line saying the bundle was altered or built by another tool", what, msg)
				}
			}
			r, err := Open(path)
			if err == nil {
				r.Close()
			}
			check("Open", err)
			_, err = Verify(t.Context(), path, VerifyOptions{})
			check("Verify", err)
			_, err = Inspect(path)
			check("Inspect", err)
		})
	}

	t.Run("an OCI layout of another tool without a lock still opens", func(t *testing.T) {
		path := filepath.Join(dir, "foreign.tar")
		retar(t, clean, path, func(files map[string][]byte) {
			files[LockFile] = nil
			editIndex(t, files, func(idx *v1.IndexManifest) { idx.Annotations = nil })
		})
		r, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if r.Lock() != nil || len(r.Entries()) != len(w.entries) {
			t.Errorf("lock %v, %d entries; want no lock and %d entries from index.json", r.Lock(), len(r.Entries()), len(w.entries))
		}
		if _, err := Verify(t.Context(), path, VerifyOptions{}); err != nil {
			t.Errorf("Verify: %v", err)
		}
	})
}

// TestTrailingBytes appends to a bundle: Open and Inspect read it and say
// how many bytes follow the archive; Verify refuses it. Zeros padding the
// archive to a tar record are no trailing data.
func TestTrailingBytes(t *testing.T) {
	w := newWorld(t)
	dir := t.TempDir()
	clean := filepath.Join(dir, "bundle.tar")
	write(t, w, clean, w.entries)
	b, err := os.ReadFile(clean)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		tail []byte
		want int64
	}{
		{"garbage", []byte("this was not written by ferry\n"), 30},
		{"a zero then garbage", append(make([]byte, 100), 'x'), 101},
		{"zero padding to a tar record", make([]byte, 10240-len(b)%10240), 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, "tail.tar")
			if err := os.WriteFile(path, append(append([]byte(nil), b...), tt.tail...), 0o644); err != nil {
				t.Fatal(err)
			}
			r, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			got := r.TrailingBytes()
			r.Close()
			if got != tt.want {
				t.Errorf("TrailingBytes = %d, want %d", got, tt.want)
			}
			s, err := Inspect(path)
			if err != nil || s.TrailingBytes != tt.want {
				t.Errorf("Inspect: trailing %d, err %v; want %d and no error", s.TrailingBytes, err, tt.want)
			}
			rep, err := Verify(t.Context(), path, VerifyOptions{})
			if tt.want == 0 {
				if err != nil {
					t.Errorf("Verify: %v", err)
				}
				return
			}
			var ve *VerifyError
			if !errors.As(err, &ve) || len(ve.Problems) != 1 || rep.TrailingBytes != tt.want {
				t.Fatalf("Verify: err %v, report %+v; want one problem and %d trailing bytes", err, rep, tt.want)
			}
			if want := "bytes after the end of the tar archive"; !strings.Contains(ve.Problems[0].String(), want) {
				t.Errorf("problem %q does not say %q", ve.Problems[0], want)
			}
		})
	}
}

// TestSourcePathsDoNotChangeTheBundle writes the same images from locks
// naming the same release file ./release.yaml, release.yaml and by its
// absolute path: the bundles are byte-identical.
func TestSourcePathsDoNotChangeTheBundle(t *testing.T) {
	w := newWorld(t)
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var first string
	for i, spelled := range []string{"./release.yaml", "release.yaml", filepath.Join(wd, "release.yaml"), "sub/../release.yaml"} {
		lf := *w.lock
		lf.Images = nil
		for j, im := range w.lock.Images {
			im.Sources = []lock.Source{{File: spelled, Line: j + 3, Path: "spec.containers[0].image"}}
			lf.Images = append(lf.Images, im)
		}
		path := filepath.Join(dir, "bundle"+string(rune('0'+i))+".tar")
		if _, err := Write(t.Context(), path, w.fresh(), Options{Lock: &lf, Jobs: 4}); err != nil {
			t.Fatal(err)
		}
		if !Current(t.Context(), path, &lf, false) {
			t.Errorf("-f %s: Current does not recognise the bundle just written", spelled)
		}
		if i == 0 {
			first = fileHash(t, path)
			r, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			if got := r.Lock().Images[0].Sources[0].File; got != "release.yaml" {
				t.Errorf("the bundle's lock records %q, want release.yaml", got)
			}
			r.Close()
			continue
		}
		if got := fileHash(t, path); got != first {
			t.Errorf("-f %s gave a bundle hashing to %s, -f ./release.yaml to %s", spelled, got, first)
		}
	}
}

func TestSourcePath(t *testing.T) {
	for _, tt := range []struct{ file, wd, want string }{
		{"./release.yaml", "/work", "release.yaml"},
		{"/work/k8s/../release.yaml", "/work", "release.yaml"},
		{"/work/k8s/app.yaml", "/work", "k8s/app.yaml"},
		{"/elsewhere/app.yaml", "/work", "/elsewhere/app.yaml"},
		{"../up/app.yaml", "/work", "../up/app.yaml"},
		{"-", "/work", "-"},
	} {
		if got := sourcePath(tt.file, tt.wd); got != tt.want {
			t.Errorf("sourcePath(%q, %q) = %q, want %q", tt.file, tt.wd, got, tt.want)
		}
	}
}
