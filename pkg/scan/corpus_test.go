package scan

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/pkg/internal/prereq"
)

// corpusDir holds real releases, byte for byte (see its SOURCES.md).
const corpusDir = "../../../shared/corpus/manifests"

// corpusCounts is how many references a user moving each release would want
// found, and scan finds (total 126):
//
//	argo-cd 10: image fields only (one image repeated across workloads, plus dex and redis).
//	calico 5, flux 6, ingress-nginx 3, cert-manager 3+1 (the acmesolver --flag=REF arg).
//	istio 8: three image fields and busybox:1.28 in the sidecar-injector's grpc
//	  template; the {{ }} placeholders are not references; the values JSON's
//	  global.hub + global.tag + global.proxy(_init).image (twice: values and
//	  merged-values) are four split references (issue #16).
//	knative-eventing 18: 5 fields, 2 *_IMAGE env values, 11 in two image-catalog ConfigMaps.
//	knative-serving 6: 5 fields (4 Deployments and the caching.internal.knative.dev Image
//	  CR) and config-deployment's queue-sidecar-image; _example blocks are skipped.
//	kserve 23: 17 fields (LLMInferenceServiceConfig templates included) and 6 images in
//	  JSON held by inferenceservice-config; the art explainer ("image" without a tag,
//	  completed by "defaultImageVersion" at run time) is not a reference.
//	prometheus-operator 2: the operator and its --prometheus-config-reloader arg; the
//	  4 MB of CRD schemas hold only image properties.
//	rook-ceph-cluster 1 (CephCluster.spec.cephVersion.image; not the tag in a comment).
//	rook-ceph-operator 8: the operator and the 7 CSI images of its image-set ConfigMap.
//	strimzi 22: the operator, 9 *_IMAGE env values, STRIMZI_DEFAULT_MAVEN_BUILDER (a fully
//	  qualified value under a name without IMAGE), and 3x4 version=REF lines.
//	tekton 10: 4 fields and 6 flag/value pairs in a commented flow sequence, tag@digest
//	  and digest-only alike; not the busybox named in a comment.
var corpusCounts = map[string]int{
	"argo-cd-v3.5.1.yaml":                   10,
	"calico-v3.32.1.yaml":                   5,
	"cert-manager-v1.19.4.yaml":             4,
	"flux-v2.9.3.yaml":                      6,
	"ingress-nginx-controller-v1.15.1.yaml": 3,
	"istio-1.29.1.yaml":                     8,
	"knative-eventing-core-v1.21.0.yaml":    18,
	"knative-serving-core-v1.21.1.yaml":     6,
	"kserve-v0.16.0.yaml":                   23,
	"prometheus-operator-v0.84.0.yaml":      2,
	"rook-ceph-cluster-v1.20.6.yaml":        1,
	"rook-ceph-operator-v1.20.6.yaml":       8,
	"strimzi-cluster-operator-1.2.0.yaml":   22,
	"tekton-pipeline-v0.53.2.yaml":          10,
}

func corpus(t *testing.T) map[string][]Ref {
	t.Helper()
	if _, err := os.Stat(corpusDir); err != nil {
		missingCorpus(t, err)
	}
	refs, err := Scan(context.Background(), []string{corpusDir}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	byFile := map[string][]Ref{}
	for _, r := range refs {
		byFile[filepath.Base(r.File)] = append(byFile[filepath.Base(r.File)], r)
	}
	return byFile
}

func TestCorpusCounts(t *testing.T) {
	byFile := corpus(t)
	for file, want := range corpusCounts {
		if got := len(byFile[file]); got != want {
			t.Errorf("%s: %d references, want %d", file, got, want)
			for _, r := range byFile[file] {
				t.Logf("  %d %s %s %s", r.Line, r.Path, r.Image, r.Source)
			}
		}
	}
	for file := range byFile {
		if _, ok := corpusCounts[file]; !ok {
			t.Errorf("%s: not in corpusCounts", file)
		}
	}
	for file, refs := range byFile {
		for _, r := range refs {
			if r.Err != nil {
				t.Errorf("%s:%d: invalid reference in a real release: %v", file, r.Line, r.Err)
			}
			if r.Span.Offset < 0 && len(r.Parts) == 0 {
				t.Errorf("%s:%d: %q not located in the file's bytes", file, r.Line, r.Image)
			}
			for _, p := range r.Parts {
				if p.Span.Offset < 0 {
					t.Errorf("%s:%d: part %s of %q not located in the file's bytes", file, r.Line, p.Path, r.Image)
				}
			}
		}
	}
}

func TestCorpusMustFind(t *testing.T) {
	byFile := corpus(t)
	tests := []struct {
		file, image, source string
		line                int
	}{
		{"tekton-pipeline-v0.53.2.yaml", "gcr.io/tekton-releases/github.com/tektoncd/pipeline/cmd/entrypoint:v0.53.2@sha256:7a4269475491e3e9b70e173de6871596e63a9eefd792f2127ca7004145915a76", "args", 2228},
		{"tekton-pipeline-v0.53.2.yaml", "cgr.dev/chainguard/busybox@sha256:19f02276bf8dbdd62f069b922f10c65262cc34b710eea26ff928129a736be791", "args", 2232},
		{"tekton-pipeline-v0.53.2.yaml", "mcr.microsoft.com/powershell:nanoserver@sha256:b6d5ff841b78bdf2dfed7550000fd4f3437385b8fa686ec0f010be24777654d6", "args", 2235},
		{"prometheus-operator-v0.84.0.yaml", "quay.io/prometheus-operator/prometheus-config-reloader:v0.84.0", "args", 70507},
		{"cert-manager-v1.19.4.yaml", "quay.io/jetstack/cert-manager-acmesolver:v1.19.4", "args", 13340},
		{"strimzi-cluster-operator-1.2.0.yaml", "quay.io/strimzi/kafka:1.2.0-kafka-4.2.0", "env", 77},
		{"strimzi-cluster-operator-1.2.0.yaml", "quay.io/strimzi/kafka:1.2.0-kafka-4.3.1", "env", 92},
		{"strimzi-cluster-operator-1.2.0.yaml", "quay.io/strimzi/maven-builder:1.2.0", "env", 106},
		{"knative-serving-core-v1.21.1.yaml", "gcr.io/knative-releases/knative.dev/serving/cmd/queue@sha256:40957d3ced3b185b7a78bbd771be69b0a13137dcbee5ff7f82ae738b56037d9c", "configmap", 7233},
		{"knative-serving-core-v1.21.1.yaml", "gcr.io/knative-releases/knative.dev/serving/cmd/queue@sha256:40957d3ced3b185b7a78bbd771be69b0a13137dcbee5ff7f82ae738b56037d9c", "field", 6828},
		{"knative-eventing-core-v1.21.0.yaml", "gcr.io/knative-releases/knative.dev/eventing/cmd/apiserver_receive_adapter@sha256:5f6f0627caa8b8d734bf1a8968c59d71c34e51403864950c0ca3e6bac8df7973", "env", 697},
		{"knative-eventing-core-v1.21.0.yaml", "gcr.io/knative-releases/transform-jsonata@sha256:293eb9924e1e33de679181f8e932afed6947961aef2fd684e77cb7293ca3510e", "configmap", 372},
		{"rook-ceph-operator-v1.20.6.yaml", "registry.k8s.io/sig-storage/csi-provisioner:v6.2.0", "configmap", 110},
		{"rook-ceph-operator-v1.20.6.yaml", "quay.io/csiaddons/k8s-sidecar:v0.14.0", "configmap", 116},
		{"rook-ceph-cluster-v1.20.6.yaml", "quay.io/ceph/ceph:v20.2.4", "field", 24},
		{"kserve-v0.16.0.yaml", "kserve/storage-initializer:v0.16.0", "configmap-embedded", 73182},
		{"kserve-v0.16.0.yaml", "ghcr.io/llm-d/llm-d-routing-sidecar:v0.2.0", "field", 73733},
		{"istio-1.29.1.yaml", "busybox:1.28", "configmap-embedded", 1657},
		{"istio-1.29.1.yaml", "gcr.io/istio-release/proxyv2:1.29.1", "field", 4041},
		{"ingress-nginx-controller-v1.15.1.yaml", "registry.k8s.io/ingress-nginx/controller:v1.15.1@sha256:594ceea76b01c592858f803f9ff4d2cb40542cae2060410b2c95f75907d659e1", "field", 446},
		{"argo-cd-v3.5.1.yaml", "public.ecr.aws/docker/library/redis:8.2.3-alpine", "field", 32485},
	}
	for _, tt := range tests {
		found := false
		for _, r := range byFile[tt.file] {
			if r.Image == tt.image && r.Source == tt.source && r.Line == tt.line {
				found = true
			}
		}
		if !found {
			t.Errorf("%s:%d: %q (%s) not found", tt.file, tt.line, tt.image, tt.source)
		}
	}
}

// missingCorpus skips a corpus test in a plain clone, saying in one line
// how to run it, and fails it in CI, where the corpus must be present.
func missingCorpus(t *testing.T, err error) {
	t.Helper()
	abs, _ := filepath.Abs(corpusDir)
	prereq.SkipRequired(t, fmt.Sprintf("corpus of real releases not found at %s (%v): to run the corpus tests, put it there (see its SOURCES.md); TestReleaseShapes covers its shapes meanwhile", abs, err))
}

// mustNotFind fails for references in CRD schemas, _example blocks,
// templates, and names that are only part of an image (a split hub/image
// or a defaultImageVersion field).
func mustNotFind(t *testing.T, file string, refs []Ref) {
	t.Helper()
	for _, r := range refs {
		switch {
		case r.Kind == "CustomResourceDefinition":
			t.Errorf("%s:%d: %q found in a CRD schema", file, r.Line, r.Image)
		case strings.Contains(r.Path, "_example"):
			t.Errorf("%s:%d: %q found in an _example block", file, r.Line, r.Image)
		case strings.ContainsAny(r.Image, "{}$*"):
			t.Errorf("%s:%d: template %q reported", file, r.Line, r.Image)
		case !strings.ContainsAny(r.Image, ":@"):
			t.Errorf("%s:%d: %q has neither tag nor digest: a split hub/image or defaultImageVersion field", file, r.Line, r.Image)
		}
	}
}

func TestCorpusMustNotFind(t *testing.T) {
	byFile := corpus(t)
	for file, refs := range byFile {
		mustNotFind(t, file, refs)
	}
	// References named only in comments.
	comments := []struct {
		file string
		line int
	}{
		{"tekton-pipeline-v0.53.2.yaml", 2230},
		{"rook-ceph-cluster-v1.20.6.yaml", 22},
	}
	for _, c := range comments {
		for _, r := range byFile[c.file] {
			if r.Line == c.line {
				t.Errorf("%s:%d: %q found in a comment", c.file, c.line, r.Image)
			}
		}
	}
}
