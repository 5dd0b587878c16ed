package webhook

import (
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/pkg/lock"
)

const (
	digestA = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	digestB = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	digestC = "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
)

func testLock() *lock.File {
	l := lock.New()
	l.Images = []lock.Image{
		{Image: "docker.io/library/nginx:1.25", Digest: digestA,
			Resolved:  "index.docker.io/library/nginx@" + digestA,
			Relocated: "registry.internal/mirror/library/nginx@" + digestA},
		{Image: "gcr.io/tekton-releases/pipeline/controller:v0.50.0", Digest: digestB,
			Resolved:  "gcr.io/tekton-releases/pipeline/controller@" + digestB,
			Relocated: "registry.internal/mirror/tekton-releases/pipeline/controller@" + digestB},
		// Resolved only, as after ferry resolve: the location is the source pinned.
		{Image: "quay.io/prometheus/node-exporter:v1.8.0", Digest: digestC,
			Resolved: "quay.io/prometheus/node-exporter@" + digestC},
		// No location at all: nothing to map to.
		{Image: "busybox:1.36"},
	}
	return l
}

func TestWebhookMap(t *testing.T) {
	rules := []Rule{
		{From: "gcr.io", To: "registry.internal/gcr"},
		{From: "gcr.io/tekton-releases", To: "registry.internal/tekton"},
		{From: "gcr.io/tekton-releases/pipeline", To: "registry.internal/pipeline"},
		{From: "docker.io/library", To: "registry.internal/hub"},
		{From: "index.docker.io/bitnami", To: "registry.internal/bitnami"},
		{From: "quay.io/foo", To: "registry.internal/foo"},
		{From: "localhost:5000/team", To: "registry.internal/team/"},
	}
	m, err := NewMapping(testLock(), rules)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, image string
		want        string
		how         How
	}{
		{"lock as written", "docker.io/library/nginx:1.25", "registry.internal/mirror/library/nginx@" + digestA, ByLock},
		{"lock by normalised form: short name", "nginx:1.25", "registry.internal/mirror/library/nginx@" + digestA, ByLock},
		{"lock by normalised form: index.docker.io", "index.docker.io/library/nginx:1.25", "registry.internal/mirror/library/nginx@" + digestA, ByLock},
		{"lock by digest", "nginx@" + digestA, "registry.internal/mirror/library/nginx@" + digestA, ByLock},
		{"lock by tag and digest", "nginx:1.25@" + digestA, "registry.internal/mirror/library/nginx@" + digestA, ByLock},
		{"lock by resolved form", "index.docker.io/library/nginx@" + digestA, "registry.internal/mirror/library/nginx@" + digestA, ByLock},
		{"lock resolved-only entry", "quay.io/prometheus/node-exporter:v1.8.0", "quay.io/prometheus/node-exporter@" + digestC, ByLock},
		{"lock entry without location falls to rules", "busybox:1.36", "registry.internal/hub/busybox:1.36", ByRule},
		{"other digest of a locked tag is not the lock's", "nginx:1.25@" + digestB, "registry.internal/hub/nginx:1.25@" + digestB, ByRule},
		{"lock beats a longer rule", "gcr.io/tekton-releases/pipeline/controller:v0.50.0", "registry.internal/mirror/tekton-releases/pipeline/controller@" + digestB, ByLock},
		{"longest prefix wins", "gcr.io/tekton-releases/pipeline/webhook:v0.50.0", "registry.internal/pipeline/webhook:v0.50.0", ByRule},
		{"middle prefix", "gcr.io/tekton-releases/triggers/controller:v1", "registry.internal/tekton/triggers/controller:v1", ByRule},
		{"host prefix", "gcr.io/distroless/static:nonroot", "registry.internal/gcr/distroless/static:nonroot", ByRule},
		{"component boundary", "gcr.io/tekton-releasesx/app:v1", "registry.internal/gcr/tekton-releasesx/app:v1", ByRule},
		{"boundary: no partial component", "quay.io/foobar/app:v1", "quay.io/foobar/app:v1", ByNone},
		{"prefix equal to the repository", "quay.io/foo:v1", "registry.internal/foo:v1", ByRule},
		{"docker.io short name", "redis:7", "registry.internal/hub/redis:7", ByRule},
		{"docker.io untagged keeps no tag", "redis", "registry.internal/hub/redis", ByRule},
		{"docker.io org", "bitnami/redis:7", "registry.internal/bitnami/redis:7", ByRule},
		{"docker.io org spelled docker.io", "docker.io/bitnami/redis:7", "registry.internal/bitnami/redis:7", ByRule},
		{"rule keeps tag and digest", "gcr.io/x/y:v1@" + digestC, "registry.internal/gcr/x/y:v1@" + digestC, ByRule},
		{"rule keeps digest", "gcr.io/x/y@" + digestC, "registry.internal/gcr/x/y@" + digestC, ByRule},
		{"host with port, trailing slash in rule", "localhost:5000/team/app:1", "registry.internal/team/app:1", ByRule},
		{"no match", "ghcr.io/org/app:1", "ghcr.io/org/app:1", ByNone},
		{"direct.to strips and never maps", "direct.to/nginx:1.25", "nginx:1.25", ByDirect},
		{"direct.to keeps a full reference", "direct.to/gcr.io/x/y:v1", "gcr.io/x/y:v1", ByDirect},
		{"direct.to alone is left", "direct.to/", "direct.to/", ByNone},
		{"invalid reference is left", "Nginx:1.25", "Nginx:1.25", ByNone},
		{"template placeholder is left", "${IMAGE}", "${IMAGE}", ByNone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := m.Map(tt.image)
			if got.Image != tt.want || got.How != tt.how {
				t.Errorf("Map(%q) = %q (%q), want %q (%q)", tt.image, got.Image, got.How, tt.want, tt.how)
			}
		})
	}
}

func TestWebhookMapDockerHubHostSpellings(t *testing.T) {
	for _, from := range []string{"docker.io/library", "index.docker.io/library", "registry-1.docker.io/library", "docker.io/library/"} {
		t.Run(from, func(t *testing.T) {
			m, err := NewMapping(nil, []Rule{{From: from, To: "r.internal/hub"}})
			if err != nil {
				t.Fatal(err)
			}
			for _, image := range []string{"nginx:1.25", "library/nginx:1.25", "docker.io/library/nginx:1.25", "index.docker.io/library/nginx:1.25"} {
				if got := m.Map(image).Image; got != "r.internal/hub/nginx:1.25" {
					t.Errorf("Map(%q) = %q, want r.internal/hub/nginx:1.25", image, got)
				}
			}
		})
	}
}

func TestWebhookParseRule(t *testing.T) {
	tests := []struct {
		name, in string
		want     Rule
		err      string
	}{
		{"ok", "gcr.io/tekton-releases=registry.internal/tekton", Rule{From: "gcr.io/tekton-releases", To: "registry.internal/tekton"}, ""},
		{"no equals", "gcr.io", Rule{}, "want SRC_PREFIX=DST_PREFIX"},
		{"empty destination", "gcr.io=", Rule{}, "both prefixes"},
		{"source without host", "library=registry.internal/hub", Rule{}, "must start with a registry host"},
		{"destination without host", "gcr.io=mirror", Rule{}, "must start with a registry host"},
		{"scheme", "https://gcr.io=registry.internal", Rule{}, "without http://"},
		{"uppercase", "gcr.io/Foo=registry.internal", Rule{}, "source prefix"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRule(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParseRule(%q) error = %v, want it to contain %q", tt.in, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("ParseRule(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestWebhookNewMappingConflictingRules(t *testing.T) {
	_, err := NewMapping(nil, []Rule{{From: "docker.io/library", To: "a.io/x"}, {From: "index.docker.io/library", To: "b.io/y"}})
	if err == nil || !strings.Contains(err.Error(), "already mapped") {
		t.Fatalf("error = %v, want a conflict", err)
	}
}

func TestWebhookKnown(t *testing.T) {
	m, err := NewMapping(testLock(), []Rule{{From: "ghcr.io/org", To: "registry.internal/org"}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		image string
		want  bool
	}{
		{"nginx:1.25", true},
		{"registry.internal/mirror/library/nginx@" + digestA, true},
		{"ghcr.io/org/app:1", true},
		{"registry.internal/org/app:1", true},
		{"registry.internal/orgx/app:1", false},
		{"nginx:1.26", false},
		{"registry.internal/mirror/library/nginx@" + digestB, false},
		{"not a ref!", false},
	}
	for _, tt := range tests {
		if got := m.Known(tt.image); got != tt.want {
			t.Errorf("Known(%q) = %v, want %v", tt.image, got, tt.want)
		}
	}
}

func TestWebhookParseRules(t *testing.T) {
	good := "apiVersion: ferry.dev/v1alpha1\nkind: ImageRules\nrules:\n- from: gcr.io/tekton-releases\n  to: registry.internal/tekton\n"
	rules, err := ParseRules([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if len(rules) != 1 || rules[0] != (Rule{From: "gcr.io/tekton-releases", To: "registry.internal/tekton"}) {
		t.Errorf("rules = %+v", rules)
	}
	for name, bad := range map[string]string{
		"unknown field": "apiVersion: ferry.dev/v1alpha1\nkind: ImageRules\nrules:\n- from: gcr.io\n  too: registry.internal\n",
		"wrong kind":    "apiVersion: ferry.dev/v1alpha1\nkind: ImagesLock\nrules: []\n",
		"bad rule":      "apiVersion: ferry.dev/v1alpha1\nkind: ImageRules\nrules:\n- from: gcr.io\n",
		"not yaml":      "rules: [",
	} {
		if _, err := ParseRules([]byte(bad)); err == nil {
			t.Errorf("%s: ParseRules accepted %q", name, bad)
		}
	}
}
