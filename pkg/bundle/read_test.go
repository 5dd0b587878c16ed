package bundle

import (
	"archive/tar"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func descOf(h v1.Hash, size int64) v1.Descriptor { return v1.Descriptor{Digest: h, Size: size} }

// entry is one tar entry of a hand-made archive.
type entry struct {
	name string
	typ  byte
	body string
	link string
}

var (
	hexA        = strings.Repeat("a", 64)
	validLayout = entry{name: "oci-layout", body: layoutJSON}
	validIndex  = entry{name: "index.json", body: `{"schemaVersion":2,"manifests":[]}`}
)

// makeTar writes entries with archive/tar.
func makeTar(t testing.TB, entries []entry) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		h := &tar.Header{Name: e.name, Typeflag: typ, Mode: 0o644, Linkname: e.link, Size: int64(len(e.body))}
		if typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatalf("header %q: %v", e.name, err)
		}
		if h.Size > 0 {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestOpenRefusesHostileTars(t *testing.T) {
	valid := makeTar(t, []entry{validLayout, validIndex})
	tests := []struct {
		name string
		tar  []byte
		want string
	}{
		{"parent path", makeTar(t, []entry{validLayout, validIndex, {name: "../evil", body: "x"}}), "leaves the archive"},
		{"parent inside", makeTar(t, []entry{validLayout, validIndex, {name: "blobs/../../evil", body: "x"}}), "leaves the archive"},
		{"absolute path", makeTar(t, []entry{validLayout, validIndex, {name: "/etc/passwd", body: "x"}}), "absolute path"},
		{"symlink", makeTar(t, []entry{validLayout, validIndex, {name: "blobs/sha256/" + hexA, typ: tar.TypeSymlink, link: "/etc/shadow"}}), "symbolic link"},
		{"hard link", makeTar(t, []entry{validLayout, validIndex, {name: "blobs/sha256/" + hexA, typ: tar.TypeLink, link: "index.json"}}), "hard link"},
		{"device", makeTar(t, []entry{validLayout, validIndex, {name: "blobs/sha256/" + hexA, typ: tar.TypeChar}}), "device"},
		{"fifo", makeTar(t, []entry{validLayout, validIndex, {name: "blobs/sha256/" + hexA, typ: tar.TypeFifo}}), "device or FIFO"},
		{"duplicate", makeTar(t, []entry{validLayout, validIndex, {name: "index.json", body: `{"schemaVersion":2,"manifests":[]}`}}), "appears twice"},
		{"duplicate through ./", makeTar(t, []entry{validLayout, validIndex, {name: "./index.json", body: "{}"}}), "appears twice"},
		{"outside blobs", makeTar(t, []entry{validLayout, validIndex, {name: "etc/cron.d/x", body: "x"}}), "unexpected file"},
		{"bad blob name", makeTar(t, []entry{validLayout, validIndex, {name: "blobs/sha256/xyz", body: "x"}}), "unexpected file"},
		{"other algorithm", makeTar(t, []entry{validLayout, validIndex, {name: "blobs/sha512/", typ: tar.TypeDir}}), "unexpected directory"},
		{"unclean path", makeTar(t, []entry{validLayout, validIndex, {name: "blobs//sha256/" + hexA, body: "x"}}), "not a clean path"},
		{"truncated data", valid[:512+100], "truncated"},
		{"truncated header", valid[:512+len(layoutJSON)+12], "truncated"},
		{"no end marker", valid[:len(valid)-1024], "end-of-archive"},
		{"empty file", nil, "end-of-archive"},
		{"not a tar", bytes.Repeat([]byte("garbage!"), 200), "not a readable tar"},
		{"huge index.json", makeTar(t, []entry{validLayout, {name: "index.json", body: `{"manifests":[` + strings.Repeat(" ", MaxIndexSize) + `]}`}}), "more than"},
		{"index.json not JSON", makeTar(t, []entry{validLayout, {name: "index.json", body: "manifests: []"}}), "not a valid index"},
		{"index.json bad digest", makeTar(t, []entry{validLayout, {name: "index.json", body: `{"manifests":[{"digest":"sha256:abc","size":1}]}`}}), "not a valid index"},
		{"no index.json", makeTar(t, []entry{validLayout}), "no index.json"},
		{"no oci-layout", makeTar(t, []entry{validIndex}), "no oci-layout"},
		{"bad lock", makeTar(t, []entry{validLayout, validIndex, {name: LockFile, body: "kind: Nope"}}), LockFile},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "bundle.tar")
			if err := os.WriteFile(path, tt.tar, 0o644); err != nil {
				t.Fatal(err)
			}
			r, err := Open(path)
			if err == nil {
				r.Close()
				t.Fatal("Open accepted it")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("err = %v, want ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %q, want it to say %q", err, tt.want)
			}
		})
	}

	t.Run("valid minimal layout", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "bundle.tar")
		if err := os.WriteFile(path, valid, 0o644); err != nil {
			t.Fatal(err)
		}
		r, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if r.Lock() != nil || len(r.Entries()) != 0 {
			t.Errorf("lock %v, entries %v", r.Lock(), r.Entries())
		}
	})
}

func TestBlobSizeMismatch(t *testing.T) {
	body := "hello"
	path := filepath.Join(t.TempDir(), "bundle.tar")
	hx := "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824" // sha256("hello")
	if err := os.WriteFile(path, makeTar(t, []entry{validLayout, validIndex, {name: "blobs/sha256/" + hx, body: body}}), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	h := mustHash(t, "sha256:"+hx)
	if _, err := r.Blob(t.Context(), descOf(h, 6)); err == nil || !strings.Contains(err.Error(), "5 bytes in the bundle") {
		t.Errorf("blob with the wrong size: err = %v", err)
	}
	if _, err := r.Blob(t.Context(), descOf(mustHash(t, "sha256:"+hexA), 1)); !errors.Is(err, ErrNotFound) {
		t.Errorf("absent blob: err = %v, want ErrNotFound", err)
	}
	rc, err := r.Blob(t.Context(), descOf(h, 5))
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(rc); err != nil || b.String() != body {
		t.Errorf("blob = %q, %v", b.String(), err)
	}
}
