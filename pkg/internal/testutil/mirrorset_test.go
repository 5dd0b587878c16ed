package testutil

import (
	"strings"
	"testing"
)

// The schema check refuses what the CRD refuses, so that it can fail.
func TestCheckMirrorSetRefuses(t *testing.T) {
	good := `apiVersion: config.openshift.io/v1
kind: ImageDigestMirrorSet
metadata:
  name: ferry
spec:
  imageDigestMirrors:
  - source: registry.k8s.io
    mirrors: [registry.internal:5000/mirror]
    mirrorSourcePolicy: NeverContactSource
`
	if err := CheckMirrorSet([]byte(good)); err != nil {
		t.Fatalf("a valid object refused: %v", err)
	}
	for _, tt := range []struct{ name, old, new, want string }{
		{"misspelt list", "imageDigestMirrors", "imageDigestMirror", "unknown field"},
		{"tag list in a digest set", "imageDigestMirrors", "imageTagMirrors", "unknown field"},
		{"misspelt source", "source:", "sources:", "unknown field"},
		{"policy outside the enum", "NeverContactSource", "Never", "mirrorSourcePolicy"},
		{"mirror with a scheme", "registry.internal:5000/mirror", "https://registry.internal/mirror", "mirrors[0]"},
		{"mirror with a tag", "registry.internal:5000/mirror", "registry.internal/mirror:v1", "mirrors[0]"},
		{"mirror twice", "[registry.internal:5000/mirror]", "[a.internal/m, a.internal/m]", "listed twice"},
		{"upper-case path", "registry.k8s.io", "registry.k8s.io/Pause", "source"},
		{"no name", "  name: ferry\n", "  labels: {}\n", "metadata.name"},
		{"wrong group", "config.openshift.io/v1", "operator.openshift.io/v1alpha1", "apiVersion"},
		{"old kind", "ImageDigestMirrorSet", "ImageContentSourcePolicy", "kind"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			bad := strings.Replace(good, tt.old, tt.new, 1)
			err := CheckMirrorSet([]byte(bad))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one about %q", err, tt.want)
			}
		})
	}
}
