package scan

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestReleaseShapes runs always, where the corpus tests need the corpus: a
// release of our own in testdata with the shapes the corpus holds. What a
// user moving it needs is found; schemas, examples, templates, comments
// and split hub/image/tag values are not.
func TestReleaseShapes(t *testing.T) {
	path := filepath.Join("testdata", "release-shapes.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	refs, err := Bytes(path, data, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"30 spec.template.spec.initContainers[name=init].image busybox:1.36 field",
		"33 spec.template.spec.containers[name=operator].image quay.io/example/operator:v1.2.0 field",
		"35 spec.template.spec.containers[name=operator].args[0] quay.io/example/reloader:v1.2.0 args",
		"36 spec.template.spec.containers[name=operator].args[1] quay.io/example/solver:v1.2.0 args",
		"39 spec.template.spec.containers[name=operator].args[4] gcr.io/example/entrypoint:v0.5.0@sha256:7a4269475491e3e9b70e173de6871596e63a9eefd792f2127ca7004145915a76 args",
		"44 spec.template.spec.containers[name=operator].env[name=EXAMPLE_KAFKA_IMAGES].value quay.io/example/kafka:1.2.0-kafka-4.2.0 env",
		"45 spec.template.spec.containers[name=operator].env[name=EXAMPLE_KAFKA_IMAGES].value quay.io/example/kafka:1.2.0-kafka-4.3.1 env",
		"47 spec.template.spec.containers[name=operator].env[name=EXAMPLE_BRIDGE_IMAGE].value quay.io/example/bridge:0.33.1 env",
		"49 spec.template.spec.containers[name=operator].env[name=EXAMPLE_DEFAULT_MAVEN_BUILDER].value quay.io/example/maven-builder:1.2.0 env",
		"62 spec.template.spec.containers[name=redis].image public.ecr.aws/docker/library/redis:8.2.3-alpine field",
		"64 spec.template.spec.containers[name=operator-again].image quay.io/example/operator:v1.2.0 field",
		"71 data.queue-sidecar-image gcr.io/example/queue@sha256:40957d3ced3b185b7a78bbd771be69b0a13137dcbee5ff7f82ae738b56037d9c configmap",
		"83 data.storageInitializer example/storage-initializer:v0.16.0 configmap-embedded",
		"106 spec.cephVersion.image quay.io/example/ceph:v20.2.4 field",
	}
	if d := cmp.Diff(want, images(refs)); d != "" {
		t.Errorf("references (-want +got):\n%s", d)
	}
	mustNotFind(t, filepath.Base(path), refs)
	for _, r := range refs {
		if r.Err != nil {
			t.Errorf("%s:%d: %v", path, r.Line, r.Err)
		}
		if r.Span.Offset < 0 || !strings.HasPrefix(string(data[r.Span.Offset:]), r.Image) {
			t.Errorf("%s:%d: %q not located in the file's bytes", path, r.Line, r.Image)
		}
	}
}
