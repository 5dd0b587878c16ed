package lock

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const d1 = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
const d2 = "sha256:2222222222222222222222222222222222222222222222222222222222222222"

func TestParseFormats(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []Image
	}{
		{
			name: "ferry",
			in: `apiVersion: ferry.dev/v1alpha1
kind: ImagesLock
images:
- image: nginx:1.25
  digest: ` + d1 + `
  resolved: index.docker.io/library/nginx@` + d1 + `
  relocated: registry.internal/mirror/library/nginx@` + d1 + `
`,
			want: []Image{{Image: "nginx:1.25", Digest: d1, Resolved: "index.docker.io/library/nginx@" + d1, Relocated: "registry.internal/mirror/library/nginx@" + d1}},
		},
		{
			name: "kbld",
			in: `apiVersion: kbld.k14s.io/v1alpha1
kind: Config
minimumRequiredVersion: 0.31.0
overrides:
- image: nginx:1.25
  newImage: index.docker.io/library/nginx@` + d1 + `
  preresolved: true
`,
			want: []Image{{Image: "nginx:1.25", Digest: d1, Resolved: "index.docker.io/library/nginx@" + d1}},
		},
		{
			name: "imgpkg",
			in: `apiVersion: imgpkg.carvel.dev/v1alpha1
kind: ImagesLock
images:
- image: gcr.io/x/y@` + d2 + `
  annotations:
    kbld.carvel.dev/id: gcr.io/x/y:v1
- image: quay.io/a/b@` + d1 + `
`,
			want: []Image{
				{Image: "gcr.io/x/y:v1", Digest: d2, Resolved: "gcr.io/x/y@" + d2},
				{Image: "quay.io/a/b@" + d1, Digest: d1, Resolved: "quay.io/a/b@" + d1},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Parse([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.want, f.Images); d != "" {
				t.Errorf("images (-want +got):\n%s", d)
			}
		})
	}
}

func TestParseRefuses(t *testing.T) {
	head := "apiVersion: ferry.dev/v1alpha1\nkind: ImagesLock\nimages:\n"
	tests := []struct {
		name, in, want string
	}{
		{"unknown kind", "apiVersion: v1\nkind: ConfigMap\n", "not a lock file"},
		{"not yaml", "images: [", "not valid YAML"},
		{"bad ref", head + "- image: 'Nginx:1'\n", "must be lowercase"},
		{"bad digest", head + "- image: nginx:1\n  digest: sha256:zz\n", "64 hex"},
		{"duplicate", head + "- image: nginx:1\n- image: nginx:1\n", "appears twice"},
		{"unpinned resolved", head + "- image: nginx:1\n  resolved: nginx:1\n", "not pinned"},
		{"mismatched relocated", head + "- image: nginx:1\n  digest: " + d1 + "\n  relocated: r.io/x@" + d2 + "\n", "does not match"},
		{"unknown field", head + "- image: nginx:1\n  digets: x\n", "digets"},
		{"artifact bad subject", head + "- image: nginx:1\n  artifacts:\n  - {subject: x, kind: signature, digest: " + d1 + "}\n", "subject"},
		{"artifact bad kind", head + "- image: nginx:1\n  artifacts:\n  - {subject: " + d1 + ", kind: sig, digest: " + d2 + "}\n", "kind"},
		{"artifact bad tag", head + "- image: nginx:1\n  artifacts:\n  - {subject: " + d1 + ", kind: signature, digest: " + d2 + ", tag: 'a b'}\n", "tag"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
	if _, err := Parse([]byte("apiVersion: v1\nkind: Pod\n")); !errors.Is(err, ErrUnknownFormat) {
		t.Errorf("err = %v, want ErrUnknownFormat", err)
	}
}

func TestRoundTripAndKbld(t *testing.T) {
	f := New()
	f.Images = []Image{
		{Image: "nginx:1.25", Digest: d1, Resolved: "index.docker.io/library/nginx@" + d1, Relocated: "r.internal/m/library/nginx@" + d1,
			Platforms: []Platform{{Platform: "linux/amd64", Digest: d2, Size: 10}}, Sources: []Source{{File: "a.yaml", Line: 3, Path: "spec.containers[0].image"}},
			Artifacts: []Artifact{
				{Subject: d1, Kind: "signature", Digest: d2, MediaType: "application/vnd.oci.image.manifest.v1+json", Size: 556, Tag: "sha256-" + d1[7:] + ".sig"},
				{Subject: d2, Kind: "referrer", Digest: d1, ArtifactType: "application/spdx+json", Size: 700},
			}},
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "images.lock.yaml")
	if err := f.Write(p, FormatFerry); err != nil {
		t.Fatal(err)
	}
	back, err := Read(p)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(f, back); d != "" {
		t.Errorf("round trip (-want +got):\n%s", d)
	}
	var kb bytes.Buffer
	if err := f.Encode(&kb, FormatKbld); err != nil {
		t.Fatal(err)
	}
	k, err := Parse(kb.Bytes())
	if err != nil {
		t.Fatalf("reading our own kbld lock: %v\n%s", err, kb.String())
	}
	// kbld keeps only the new location: the relocated one.
	if got := k.Images[0].Resolved; got != "r.internal/m/library/nginx@"+d1 {
		t.Errorf("kbld newImage = %s", got)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temp files left beside the lock: %v", entries)
	}
}

func TestReadMissingFileSaysWhatToDo(t *testing.T) {
	path := filepath.Join(t.TempDir(), "images.lock.yaml")
	_, err := Read(path)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "ferry resolve") {
		t.Fatalf("Read(missing) = %v, want the path and how to write a lock", err)
	}
}

// A lock written before artifacts were recorded still reads, and one with
// them reads back what was written.
func TestArtifactsBackwardCompatible(t *testing.T) {
	old := "apiVersion: ferry.dev/v1alpha1\nkind: ImagesLock\nimages:\n- image: nginx:1.25\n  digest: " + d1 + "\n"
	f, err := Parse([]byte(old))
	if err != nil {
		t.Fatalf("old lock: %v", err)
	}
	if f.Images[0].Artifacts != nil {
		t.Errorf("old lock: artifacts %v, want none", f.Images[0].Artifacts)
	}
	var b bytes.Buffer
	if err := f.Encode(&b, FormatFerry); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "artifacts") {
		t.Errorf("a lock without artifacts writes the key:\n%s", b.String())
	}
	withArt := old + "  artifacts:\n  - subject: " + d1 + "\n    kind: attestation\n    digest: " + d2 + "\n    tag: sha256-" + d1[7:] + ".att\n"
	f, err = Parse([]byte(withArt))
	if err != nil {
		t.Fatal(err)
	}
	want := []Artifact{{Subject: d1, Kind: "attestation", Digest: d2, Tag: "sha256-" + d1[7:] + ".att"}}
	if d := cmp.Diff(want, f.Images[0].Artifacts); d != "" {
		t.Errorf("artifacts (-want +got):\n%s", d)
	}
}
