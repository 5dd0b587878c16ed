package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/pkg/internal/testutil"
)

// TestClusterOpenShiftMirrorSets: what `ferry mirror-config --format
// idms` writes is accepted by a real kube-apiserver that serves
// OpenShift's own ImageDigestMirrorSet and ImageTagMirrorSet
// CustomResourceDefinitions (github.com/openshift/api, pinned in
// testutil), with strict field validation, so that a field the schema
// lacks, a missing required one or a value outside an enum is refused
// by the server rather than pruned in silence.
func TestClusterOpenShiftMirrorSets(t *testing.T) {
	skipShort(t)
	crds, err := testutil.OpenShiftMirrorSetCRDs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c := testutil.StartCluster(t)
	for _, crd := range crds {
		c.MustKubectl(t, nil, "apply", "-f", crd)
	}
	c.MustKubectl(t, nil, "wait", "--for=condition=Established", "--timeout=60s",
		"crd/imagedigestmirrorsets.config.openshift.io", "crd/imagetagmirrorsets.config.openshift.io")

	dir := t.TempDir()
	raw, err := os.ReadFile(filepath.Join("..", "..", "mirrorconfig", "testdata", "relocated.lock.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "relocated.lock.yaml"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	ca, _, _ := testutil.WriteTLS(t, t.TempDir())
	for _, tc := range []struct {
		name  string
		flags []string
	}{
		{"default", nil},
		{"never contact source, insecure and CA hints", []string{"--never-contact-source", "--insecure-registry", "registry.internal", "--registry-ca-cert", ca}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := testutil.RunFerry(t, dir, nil, append([]string{"mirror-config", "--lock", "relocated.lock.yaml", "--format", "idms"}, tc.flags...)...)
			if r.Code != 0 {
				t.Fatalf("ferry mirror-config --format idms: exit %d: %s", r.Code, r.Stderr)
			}
			out := []byte(r.Stdout)
			for _, kind := range []string{"ImageDigestMirrorSet", "ImageTagMirrorSet"} {
				if !strings.Contains(r.Stdout, "kind: "+kind) {
					t.Fatalf("mirror-config --format idms wrote no %s for a lock whose images were pushed with tags:\n%s", kind, r.Stdout)
				}
			}
			// Created for real, then read back: the server kept every mirror.
			got := c.MustKubectl(t, out, "apply", "--validate=strict", "-f", "-")
			for _, want := range []string{"imagedigestmirrorset.config.openshift.io/ferry", "imagetagmirrorset.config.openshift.io/ferry"} {
				if !strings.Contains(got, want) {
					t.Errorf("kubectl apply printed %q, want %s among what it applied", got, want)
				}
			}
			stored := c.MustKubectl(t, nil, "get", "imagedigestmirrorset", "ferry", "-o", "jsonpath={.spec.imageDigestMirrors[*].mirrors}")
			for _, want := range []string{"registry.internal/mirror", "registry.internal/hosts/quay.io", "other.internal:5000/k8s"} {
				if !strings.Contains(stored, want) {
					t.Errorf("the stored ImageDigestMirrorSet's mirrors %s lack %s", stored, want)
				}
			}
			c.MustKubectl(t, nil, "delete", "imagedigestmirrorset,imagetagmirrorset", "ferry")
		})
	}

	// The judge refuses what the schema does not allow: each break of the
	// output is refused by the server, so the passes above mean something.
	r := testutil.RunFerry(t, dir, nil, "mirror-config", "--lock", "relocated.lock.yaml", "--format", "idms")
	for _, tc := range []struct{ name, from, to, says string }{
		{"a field the schema lacks", "  imageDigestMirrors:", "  imageDigestMirror:", "imageDigestMirror"},
		{"a source that is not a host", "source: docker.io", "source: docker.io:/x", "source"},
		{"a mirror policy outside the enum", "    source: gcr.io", "    source: gcr.io\n    mirrorSourcePolicy: Sometimes", "mirrorSourcePolicy"},
	} {
		broken := strings.Replace(r.Stdout, tc.from, tc.to, 1)
		if broken == r.Stdout {
			t.Fatalf("%s: %q is not in the output, the test needs updating:\n%s", tc.name, tc.from, r.Stdout)
		}
		res := c.Kubectl(t, []byte(broken), "apply", "--validate=strict", "--dry-run=server", "-f", "-")
		if res.Code == 0 || !strings.Contains(res.Stderr, tc.says) {
			t.Errorf("%s: kubectl apply --dry-run=server exit %d, stderr %q; want it refused naming %s", tc.name, res.Code, res.Stderr, tc.says)
		}
	}
}
