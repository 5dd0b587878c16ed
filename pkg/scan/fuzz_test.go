package scan

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// fuzzTimeLimit is far more than any input the fuzzer makes should take;
// exceeding it means work that grows faster than the input (an alias bomb
// expanded, a quadratic search).
const fuzzTimeLimit = 3 * time.Second

// fuzzSeeds are small shapes from the tests and the corpus in
// /work/shared/corpus/manifests, cut down to what the rules look at.
var fuzzSeeds = []string{
	"",
	"image: nginx:1.25\n",
	`apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  containers:
  - name: app
    image: "ghcr.io/x/y:v1@sha256:0123456789012345678901234567890123456789012345678901234567890123"
  initContainers: [{name: i, image: 'busybox:1.36'}]
`,
	// tekton-pipeline: a flow sequence of args with comments.
	`spec:
  template:
    spec:
      containers:
        - name: tekton-pipelines-controller
          image: gcr.io/tekton-releases/github.com/tektoncd/pipeline/cmd/controller:v0.53.2
          args: [
            # These images are built on-demand by ko resolve.
            "-entrypoint-image", "gcr.io/tekton-releases/cmd/entrypoint:v0.53.2", "-nop-image", "gcr.io/tekton-releases/cmd/nop:v0.53.2",
            # pinning to nanoserver tag
            "-shell-image-win", "mcr.microsoft.com/powershell:nanoserver"]
`,
	// prometheus-operator: --flag=REF args.
	`kind: Deployment
spec:
  template:
    spec:
      containers:
      - args:
        - --kubelet-service=kube-system/kubelet
        - --prometheus-config-reloader=quay.io/prometheus-operator/prometheus-config-reloader:v0.84.0
        command: [/bin/op, -image, "docker.io/op:1"]
`,
	// strimzi: env values, one a list of version=REF lines.
	`spec:
  containers:
  - env:
    - name: STRIMZI_DEFAULT_CRUISE_CONTROL_IMAGE
      value: quay.io/strimzi/kafka:1.2.0-kafka-4.3.1
    - name: STRIMZI_KAFKA_IMAGES
      value: |
        4.2.0=quay.io/strimzi/kafka:1.2.0-kafka-4.2.0
        4.2.1=quay.io/strimzi/kafka:1.2.0-kafka-4.2.1
    - name: OTHER
      value: "registry.k8s.io/pause:3.9"
`,
	// knative-serving: ConfigMap data, with an _example block.
	`apiVersion: v1
kind: ConfigMap
metadata:
  name: config-deployment
data:
  queue-sidecar-image: gcr.io/knative-releases/knative.dev/serving/cmd/queue@sha256:40957d3ced3b185b7a78bbd771be69b0a13137dcbee5ff7f82ae738b56037d9c
  _example: |-
    # registries-skipping-tag-resolving: "kind.local,ko.local"
  values.yaml: |
    image: docker.io/x/y:2
    "sidecarImage": "quay.io/a/b:3",
`,
	// istio: JSON inside a ConfigMap, and a JSON document.
	`kind: ConfigMap
data:
  values: |-
    {
      "global": {
        "proxy": {
          "image": "docker.io/istio/proxyv2:1.29.1",
        }
      }
    }
`,
	`{"apiVersion":"v1","kind":"Pod","spec":{"containers":[{"name":"a","image":"nginx:1.25","args":["--image=ghcr.io/a/b:1"]}]}}`,
	`kind: List
items:
- kind: Pod
  spec: {containers: [{image: alpine:3}]}
- kind: ConfigMap
  data: {image: "registry.example.com/x:1"}
- plain
`,
	"base: &img nginx:1.25\ncontainers:\n- image: *img\n- image: &b \"busybox:1\"\n- {image: *b}\n",
	"a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\nimage: [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n",
	"---\nimage: a:1\n---\n# comment only\n---\nkind: Pod\nspec: {containers: [{image: b:2}]}\n...\n",
	"\xef\xbb\xbfimage: \"caf\u00e9/x:1\"\r\nnext: \"\\u0041\"\r\nimage2: 'nginx:1'\r\n",
	"image: \"nginx\\x3a1.25\"\n",
	"image: >-\n  nginx:1.25\nimage2: |\n  nginx:1.25\n",
	"image: !!str &x ghcr.io/a/b:1\nother: *x\n",
	"kind: Pod\nspec:\n  containers:\n  - image: {{ .Values.image }}\n  - image: nginx@sha256:zz\n  - image: \"\"\n",
}

// fuzzConfig has a rule of each kind, so that user rules are fuzzed too.
const fuzzConfig = `apiVersion: ferry.dev/v1alpha1
kind: Config
searchRules:
- name: keys
  keyPattern: "(?i)image$"
- name: sidecar
  kinds: [Deployment, Pod]
  path: spec.template.spec.containers[*].args
  valuePattern: "^--sidecar=(.+)$"
- name: indexed
  path: items[0].data
`

// FuzzScan checks, for any input, that Bytes returns without a panic in
// bounded time, and that every reference it reports has a line and is
// where its span says, verbatim: always for a valid reference, unless
// escape sequences hide it.
//
// Longer runs: go test -run '^$' -fuzz '^FuzzScan$' -fuzztime 10m ./pkg/scan/
func FuzzScan(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	cfg, err := ParseConfig([]byte(fuzzConfig))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, o := range []Options{{}, {Config: cfg}} {
			start := time.Now()
			refs, err := Bytes("fuzz.yaml", data, o)
			if d := time.Since(start); d > fuzzTimeLimit {
				t.Errorf("scanning %d bytes took %v", len(data), d)
			}
			if err != nil {
				continue
			}
			for _, r := range refs {
				checkFuzzRef(t, data, r)
			}
		}
	})
}

func checkFuzzRef(t *testing.T, data []byte, r Ref) {
	t.Helper()
	if r.Line < 1 || r.Column < 1 {
		t.Errorf("%q at line %d, column %d", r.Image, r.Line, r.Column)
	}
	if r.Image == "" {
		t.Errorf("empty reference at %s", r.Location())
	}
	off := r.Span.Offset
	if off < 0 {
		// A valid reference has no spaces, so only escape sequences in a
		// double-quoted scalar can hide its text; the value of an image
		// field that is not a reference may be folded over lines.
		if r.Err == nil && !bytes.Contains(data, []byte(`\`)) {
			t.Errorf("%q (%s): no offset, yet the input has no escapes", r.Image, r.Location())
		}
		return
	}
	if off+len(r.Image) > len(data) || string(data[off:off+len(r.Image)]) != r.Image {
		t.Fatalf("%q (%s): offset %d does not hold it", r.Image, r.Location(), off)
	}
	if v := r.Span.Value; r.Span.ValueOffset < 0 || !strings.HasPrefix(v[min(r.Span.ValueOffset, len(v)):], r.Image) {
		t.Errorf("%q: value offset %d of %q does not hold it", r.Image, r.Span.ValueOffset, v)
	}
	line := 1 + bytes.Count(data[:off], []byte("\n"))
	if r.Line != line {
		t.Errorf("%q at offset %d: line %d, want %d", r.Image, off, r.Line, line)
	}
}
