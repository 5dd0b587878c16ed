package destination

import (
	"errors"
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/pkg/imageref"
	"github.com/google/go-cmp/cmp"
)

const (
	dA = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	dB = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

func img(t *testing.T, written, digest string) Image {
	t.Helper()
	r, err := imageref.Parse(written)
	if err != nil {
		t.Fatal(err)
	}
	return Image{Written: written, Source: r, Digest: digest}
}

// flat renders a plan as written → "repo[:tag]" for comparison.
func flat(p map[string]Target) map[string]string {
	out := map[string]string{}
	for k, v := range p {
		s := v.Repo.Name()
		if v.Tag != "" {
			s += ":" + v.Tag
		}
		out[k] = s
	}
	return out
}

func TestPlan(t *testing.T) {
	tests := []struct {
		name       string
		written    []string
		repository string
		layout     Layout
		want       map[string]string
	}{
		{
			name:       "path keeps the repository path",
			written:    []string{"gcr.io/tekton-releases/pipeline/controller:v0.50", "nginx", "quay.io/prometheus/node-exporter@" + dA},
			repository: "registry.internal/mirror",
			layout:     LayoutPath,
			want: map[string]string{
				"gcr.io/tekton-releases/pipeline/controller:v0.50": "registry.internal/mirror/tekton-releases/pipeline/controller:v0.50",
				"nginx":                                  "registry.internal/mirror/library/nginx:latest",
				"quay.io/prometheus/node-exporter@" + dA: "registry.internal/mirror/prometheus/node-exporter",
			},
		},
		{
			name:       "default layout is path",
			written:    []string{"nginx:1.25"},
			repository: "registry.internal/mirror",
			want:       map[string]string{"nginx:1.25": "registry.internal/mirror/library/nginx:1.25"},
		},
		{
			name:       "path at the registry root",
			written:    []string{"nginx:1.25"},
			repository: "127.0.0.1:5000",
			layout:     LayoutPath,
			want:       map[string]string{"nginx:1.25": "127.0.0.1:5000/library/nginx:1.25"},
		},
		{
			name:       "tag and digest keeps the tag",
			written:    []string{"nginx:1.25@" + dA},
			repository: "registry.internal/m",
			layout:     LayoutPath,
			want:       map[string]string{"nginx:1.25@" + dA: "registry.internal/m/library/nginx:1.25"},
		},
		{
			name:       "host keeps the host, docker.io as users write it",
			written:    []string{"gcr.io/a/b:v1", "nginx:1.25", "localhost:5000/x:v1", "quay.io/a/b:v1"},
			repository: "registry.internal/mirror/",
			layout:     LayoutHost,
			want: map[string]string{
				"gcr.io/a/b:v1":       "registry.internal/mirror/gcr.io/a/b:v1",
				"quay.io/a/b:v1":      "registry.internal/mirror/quay.io/a/b:v1",
				"nginx:1.25":          "registry.internal/mirror/docker.io/library/nginx:1.25",
				"localhost:5000/x:v1": "registry.internal/mirror/localhost-5000/x:v1",
			},
		},
		{
			name:       "flat tags by digest",
			written:    []string{"gcr.io/a/b:v1", "quay.io/a/b:v1", "nginx@" + dB},
			repository: "registry.internal/mirror/all",
			layout:     LayoutFlat,
			want: map[string]string{
				"gcr.io/a/b:v1":  "registry.internal/mirror/all:ferry-sha256-" + strings.Repeat("a", 64),
				"quay.io/a/b:v1": "registry.internal/mirror/all:ferry-sha256-" + strings.Repeat("b", 64),
				"nginx@" + dB:    "registry.internal/mirror/all:ferry-sha256-" + strings.Repeat("b", 64),
			},
		},
		{
			name:       "same repository written twice is no collision",
			written:    []string{"nginx:1.25", "docker.io/library/nginx:1.26", "index.docker.io/library/nginx:1.25"},
			repository: "r.example/m",
			layout:     LayoutPath,
			want: map[string]string{
				"nginx:1.25":                         "r.example/m/library/nginx:1.25",
				"docker.io/library/nginx:1.26":       "r.example/m/library/nginx:1.26",
				"index.docker.io/library/nginx:1.25": "r.example/m/library/nginx:1.25",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ims []Image
			for i, w := range tt.written {
				d := dA
				if i%2 == 1 {
					d = dB
				}
				if r, _ := imageref.Parse(w); r.Digest != "" {
					d = r.Digest
				}
				if tt.name == "same repository written twice is no collision" {
					d = dA
				}
				ims = append(ims, img(t, w, d))
			}
			got, err := Plan(ims, tt.repository, tt.layout)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, flat(got)); diff != "" {
				t.Errorf("plan (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPlanSourceFromResolved(t *testing.T) {
	// The lock's resolved reference says where the image is; the tag is
	// the one written.
	src, err := imageref.Parse("mirror.gcr.io/library/nginx@" + dA)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Plan([]Image{{Written: "nginx:1.25", Source: src, Digest: dA}}, "r.example/m", LayoutHost)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"nginx:1.25": "r.example/m/mirror.gcr.io/library/nginx:1.25"}, flat(got)); diff != "" {
		t.Errorf("plan (-want +got):\n%s", diff)
	}
}

func TestPlanCollisions(t *testing.T) {
	tests := []struct {
		name     string
		images   []Image
		layout   Layout
		target   string
		mentions []string
	}{
		{
			name:     "two registries, same path",
			images:   []Image{img(t, "gcr.io/a/b:v1", dA), img(t, "quay.io/a/b:v1", dB)},
			layout:   LayoutPath,
			target:   "r.example/m/a/b",
			mentions: []string{"gcr.io/a/b", "quay.io/a/b", "--layout host"},
		},
		{
			name:     "docker hub and another registry",
			images:   []Image{img(t, "nginx:1.25", dA), img(t, "quay.io/library/nginx:1.25", dB)},
			layout:   LayoutPath,
			target:   "r.example/m/library/nginx",
			mentions: []string{"docker.io/library/nginx", "quay.io/library/nginx"},
		},
		{
			name:     "one tag, two digests",
			images:   []Image{img(t, "nginx:1.25", dA), img(t, "docker.io/library/nginx:1.25", dB)},
			layout:   LayoutHost,
			target:   "r.example/m/docker.io/library/nginx:1.25",
			mentions: []string{dA, dB},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Plan(tt.images, "r.example/m", tt.layout)
			var ce *CollisionError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want a *CollisionError", err)
			}
			if ce.Target != tt.target {
				t.Errorf("target = %s, want %s", ce.Target, tt.target)
			}
			for _, m := range tt.mentions {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %q", err, m)
				}
			}
		})
	}
	t.Run("host layout keeps them apart", func(t *testing.T) {
		if _, err := Plan([]Image{img(t, "gcr.io/a/b:v1", dA), img(t, "quay.io/a/b:v1", dB)}, "r.example/m", LayoutHost); err != nil {
			t.Error(err)
		}
	})
}

func TestParseRepository(t *testing.T) {
	tests := []struct {
		in      string
		want    string // Base.String(); "" when invalid
		wantErr string
	}{
		{in: "registry.internal/mirror", want: "registry.internal/mirror"},
		{in: "registry.internal", want: "registry.internal"},
		{in: "127.0.0.1:5000/a/b/", want: "127.0.0.1:5000/a/b"},
		{in: "localhost/x", want: "localhost/x"},
		{in: "myorg", want: "index.docker.io/myorg"},
		{in: "", wantErr: "empty"},
		{in: "https://registry.internal/m", wantErr: "scheme"},
		{in: "registry.internal/Mirror", wantErr: "lowercase"},
		{in: "registry.internal/mirror:v1", wantErr: "tag"},
		{in: "registry.internal/mirror@" + dA, wantErr: "digest"},
		{in: "registry.internal/mir--/x", wantErr: "separators"},
		{in: "registry.internal/a b", wantErr: "white space"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseRepository(tt.in)
			if tt.wantErr != "" {
				var ie *InvalidError
				if !errors.As(err, &ie) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want an *InvalidError about %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.String() != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func TestPlanRefusesFlatAtRoot(t *testing.T) {
	_, err := Plan([]Image{img(t, "nginx:1.25", dA)}, "registry.internal", LayoutFlat)
	var ie *InvalidError
	if !errors.As(err, &ie) {
		t.Fatalf("err = %v, want *InvalidError", err)
	}
}

func TestParseLayout(t *testing.T) {
	for in, want := range map[string]Layout{"": LayoutPath, "path": LayoutPath, "HOST": LayoutHost, "flat": LayoutFlat} {
		got, err := ParseLayout(in)
		if err != nil || got != want {
			t.Errorf("ParseLayout(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ParseLayout("tree"); err == nil {
		t.Error("ParseLayout(tree) succeeded")
	}
}
