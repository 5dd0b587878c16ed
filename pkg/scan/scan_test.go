package scan

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/pkg/imageref"
	"github.com/google/go-cmp/cmp"
)

// hit is the part of a Ref the table tests compare.
type hit struct {
	Image, Path, Source string
	Line, Column, Doc   int
	Kind, Name          string
}

func hits(refs []Ref) []hit {
	out := []hit{}
	for _, r := range refs {
		out = append(out, hit{r.Image, r.Path, r.Source, r.Line, r.Column, r.Doc, r.Kind, r.Name})
	}
	return out
}

// images is the compact form: "LINE PATH IMAGE SOURCE".
func images(refs []Ref) []string {
	out := []string{}
	for _, r := range refs {
		out = append(out, fmt.Sprintf("%d %s %s %s", r.Line, r.Path, r.Image, r.Source))
	}
	return out
}

func TestBytes(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{
			name: "deployment containers and init containers",
			in: `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  template:
    spec:
      initContainers:
      - name: init
        image: busybox:1.36
      containers:
      - name: app
        image: nginx
      - image: "ghcr.io/x/y:v1@sha256:0123456789012345678901234567890123456789012345678901234567890123"
`,
			want: []string{
				"9 spec.template.spec.initContainers[name=init].image busybox:1.36 field",
				"12 spec.template.spec.containers[name=app].image nginx field",
				"13 spec.template.spec.containers[1].image ghcr.io/x/y:v1@sha256:0123456789012345678901234567890123456789012345678901234567890123 field",
			},
		},
		{
			name: "cronjob, pod ephemeral containers",
			in: `kind: CronJob
metadata: {name: c}
spec:
  jobTemplate:
    spec:
      template:
        spec:
          containers: [{name: a, image: 'alpine:3'}]
---
kind: Pod
metadata: {name: p}
spec:
  ephemeralContainers:
  - name: debug
    image: busybox:1.36
`,
			want: []string{
				"8 spec.jobTemplate.spec.template.spec.containers[name=a].image alpine:3 field",
				"15 spec.ephemeralContainers[name=debug].image busybox:1.36 field",
			},
		},
		{
			name: "custom resources",
			in: `apiVersion: ceph.rook.io/v1
kind: CephCluster
metadata: {name: rook-ceph}
spec:
  cephVersion:
    # image: quay.io/ceph/ceph:v1 in a comment is not a reference
    image: quay.io/ceph/ceph:v20.2.4
`,
			want: []string{"7 spec.cephVersion.image quay.io/ceph/ceph:v20.2.4 field"},
		},
		{
			name: "traps: CRD schema, non-strings, empty, templates, wildcards",
			in: `kind: CustomResourceDefinition
spec:
  versions:
  - schema:
      openAPIV3Schema:
        properties:
          image:
            description: Container image name.
            type: string
---
a: {image: 1}
b: {image: true}
c: {image: null}
d: {image: ""}
e: {image: "{{ .ProxyImage }}"}
f: {image: $(params.image)}
g: {image: "ghcr.io/*"}
h: {image: "registry.io/app:v?"}
i: {image: ["nginx:1"]}
`,
			want: []string{},
		},
		{
			name: "kyverno policies hold patterns",
			in: `apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata: {name: p}
spec:
  rules:
  - validate:
      pattern:
        spec:
          containers:
          - image: nginx:1.25
`,
			want: []string{},
		},
		{
			name: "args: flag=value, well-known flags, other flags",
			in: `kind: Deployment
spec:
  template:
    spec:
      containers:
      - name: m
        args:
        - --acme-http01-solver-image=quay.io/jetstack/cert-manager-acmesolver:v1.19.4
        - --prometheus-config-reloader=quay.io/prometheus-operator/prometheus-config-reloader:v0.84.0
        - --image-pull-policy=IfNotPresent
        - --image-gc-threshold=85
        - --controller-class=k8s.io/ingress-nginx
        - --image-repository=quay.io/calico
        command: ["/bin/x", "--default-image=busybox:1.36"]
`,
			want: []string{
				"8 spec.template.spec.containers[name=m].args[0] quay.io/jetstack/cert-manager-acmesolver:v1.19.4 args",
				"9 spec.template.spec.containers[name=m].args[1] quay.io/prometheus-operator/prometheus-config-reloader:v0.84.0 args",
				"14 spec.template.spec.containers[name=m].command[1] busybox:1.36 args",
			},
		},
		{
			name: "args: flag then value in a flow sequence with comments",
			in: `kind: Deployment
spec:
  template:
    spec:
      containers:
      - name: c
        args: [
          # cgr.dev/chainguard/busybox:latest in a comment
          "-entrypoint-image", "gcr.io/t/entrypoint:v0.53.2@sha256:7a4269475491e3e9b70e173de6871596e63a9eefd792f2127ca7004145915a76",
          "-shell-image", "cgr.dev/chainguard/busybox@sha256:19f02276bf8dbdd62f069b922f10c65262cc34b710eea26ff928129a736be791",
          "-threads", "4", "-image-dir", "/tmp"]
`,
			want: []string{
				"9 spec.template.spec.containers[name=c].args[1] gcr.io/t/entrypoint:v0.53.2@sha256:7a4269475491e3e9b70e173de6871596e63a9eefd792f2127ca7004145915a76 args",
				"10 spec.template.spec.containers[name=c].args[3] cgr.dev/chainguard/busybox@sha256:19f02276bf8dbdd62f069b922f10c65262cc34b710eea26ff928129a736be791 args",
			},
		},
		{
			name: "env: image names, qualified values, version lists",
			in: `kind: Deployment
spec:
  template:
    spec:
      containers:
      - name: c
        env:
        - name: RELATED_IMAGE_DB
          value: postgres:16
        - name: METRICS_DOMAIN
          value: knative.dev/eventing
        - name: IMAGE_PULL_POLICY
          value: Always
        - name: KNATIVE_IMAGE_TAG
          value: v1
        - name: STRIMZI_DEFAULT_MAVEN_BUILDER
          value: quay.io/strimzi/maven-builder:1.2.0
        - name: LOG_LEVEL
          value: info
        - name: STRIMZI_KAFKA_IMAGES
          value: |
            4.2.0=quay.io/strimzi/kafka:1.2.0-kafka-4.2.0
            4.3.1=quay.io/strimzi/kafka:1.2.0-kafka-4.3.1
        - name: FROM_CM_IMAGE
          valueFrom: {configMapKeyRef: {name: x, key: y}}
`,
			want: []string{
				"9 spec.template.spec.containers[name=c].env[name=RELATED_IMAGE_DB].value postgres:16 env",
				"17 spec.template.spec.containers[name=c].env[name=STRIMZI_DEFAULT_MAVEN_BUILDER].value quay.io/strimzi/maven-builder:1.2.0 env",
				"22 spec.template.spec.containers[name=c].env[name=STRIMZI_KAFKA_IMAGES].value quay.io/strimzi/kafka:1.2.0-kafka-4.2.0 env",
				"23 spec.template.spec.containers[name=c].env[name=STRIMZI_KAFKA_IMAGES].value quay.io/strimzi/kafka:1.2.0-kafka-4.3.1 env",
			},
		},
		{
			name: "configmap data",
			in: `apiVersion: v1
kind: ConfigMap
metadata: {name: images}
data:
  _example: |
    queue-sidecar-image: gcr.io/x/queue:v1
  queue-sidecar-image: gcr.io/knative-releases/queue@sha256:40957d3ced3b185b7a78bbd771be69b0a13137dcbee5ff7f82ae738b56037d9c
  plugin: "quay.io/cephcsi/cephcsi:v3.17.0"
  default-image: busybox:1.36
  enabled: "true"
  level: info
  timeout: 5m
  domain: knative.dev/eventing
  endpoint: keda-otel-scaler.keda.svc:4317
  short: nginx:1.25
  agent: |-
    {
        "image" : "kserve/agent:v0.16.0",
        "defaultJobImage": "kserve/storage-initializer:v0.16.0",
        "imagePullPolicy": "IfNotPresent"
    }
  explainers: |-
    {"art": {"image": "kserve/art-explainer", "defaultImageVersion": "latest"}}
  template: |
    spec:
      initContainers:
      - name: init
        image: busybox:1.28
      - name: proxy
        image: "{{ .ProxyImage }}"
binaryData:
  x: aW1hZ2U=
`,
			want: []string{
				"7 data.queue-sidecar-image gcr.io/knative-releases/queue@sha256:40957d3ced3b185b7a78bbd771be69b0a13137dcbee5ff7f82ae738b56037d9c configmap",
				"8 data.plugin quay.io/cephcsi/cephcsi:v3.17.0 configmap",
				"9 data.default-image busybox:1.36 configmap",
				"18 data.agent kserve/agent:v0.16.0 configmap-embedded",
				"19 data.agent kserve/storage-initializer:v0.16.0 configmap-embedded",
				"28 data.template busybox:1.28 configmap-embedded",
			},
		},
		{
			name: "data outside a ConfigMap is not ConfigMap data",
			in: `kind: Secret
data:
  plugin: quay.io/cephcsi/cephcsi:v3.17.0
`,
			want: []string{},
		},
		{
			name: "documents without kind, empty and comment-only documents",
			in: `# leading comment
---
---
# only a comment
---
image: nginx:1.25
services:
  web: {image: "redis:7"}
`,
			want: []string{
				"6 image nginx:1.25 field",
				"8 services.web.image redis:7 field",
			},
		},
		{
			name: "JSON",
			in:   "{\n\t\"kind\": \"Pod\",\n\t\"spec\": {\"containers\": [{\"name\": \"a\", \"image\": \"nginx:1.25\"}]}\n}\n",
			want: []string{"3 spec.containers[name=a].image nginx:1.25 field"},
		},
		{
			name: "aliases point at the anchored scalar",
			in: `x: &img nginx:1.25
kind: Pod
spec:
  containers:
  - name: a
    image: *img
  - name: b
    image: &other redis:7
`,
			want: []string{
				"1 spec.containers[name=a].image nginx:1.25 field",
				"8 spec.containers[name=b].image redis:7 field",
			},
		},
		{
			name: "keys that need quoting in paths",
			in: `kind: ConfigMap
data:
  "csi.image": quay.io/x/y:v1
`,
			want: []string{`3 data["csi.image"] quay.io/x/y:v1 configmap`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			refs, err := Bytes("in.yaml", []byte(tt.in), Options{})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, images(refs)); diff != "" {
				t.Errorf("refs (-want +got):\n%s", diff)
			}
			for _, r := range refs {
				if r.Span.Offset < 0 || !strings.HasPrefix(tt.in[r.Span.Offset:], r.Image) {
					t.Errorf("%s: offset %d does not hold %q", r.Location(), r.Span.Offset, r.Image)
				}
			}
		})
	}
}

func TestBytesListAndPositions(t *testing.T) {
	in := `apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Pod
  metadata: {name: first}
  spec: {containers: [{name: a, image: "nginx:1.25"}]}
- apiVersion: apps/v1
  kind: Deployment
  metadata:
    name: second
  spec:
    template:
      spec:
        containers:
        - name: é
          args: ["--sidecar-image=busybox:1.36"]
---
kind: Pod
metadata: {name: third}
spec: {containers: [{image: 'redis:7'}]}
`
	refs, err := Bytes("list.yaml", []byte(in), Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := []hit{
		{"nginx:1.25", "items[0].spec.containers[name=a].image", "field", 7, 41, 0, "Pod", "first"},
		{"busybox:1.36", "items[1].spec.template.spec.containers[name=é].args[0]", "args", 17, 35, 0, "Deployment", "second"},
		{"redis:7", "spec.containers[0].image", "field", 21, 30, 1, "Pod", "third"},
	}
	if diff := cmp.Diff(want, hits(refs)); diff != "" {
		t.Errorf("refs (-want +got):\n%s", diff)
	}
}

func TestInvalidImageField(t *testing.T) {
	in := "kind: Pod\nspec:\n  containers:\n  - image: nginx:1.25@sha256:zz\n  - image: Nginx\n"
	refs, err := Bytes("release.yaml", []byte(in), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(refs) != 2 || refs[0].Err == nil || refs[1].Err == nil {
		t.Fatalf("want two invalid refs, got %+v", refs)
	}
	err = Validate(refs)
	want := `release.yaml:4: "nginx:1.25@sha256:zz" is not a valid image reference: digest must be 64 hex characters`
	if err == nil || err.Error() != want {
		t.Errorf("Validate() = %v, want %s", err, want)
	}
	var ie *imageref.InvalidError
	if !errors.As(err, &ie) {
		t.Errorf("Validate() error does not wrap *imageref.InvalidError")
	}
	if err := Validate(refs[:0]); err != nil {
		t.Errorf("Validate(nothing) = %v", err)
	}
}

func TestSyntaxErrors(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"bad mapping", "kind: Pod\nmetadata:\n  name: a\n    b: c: d\n", "release.yaml:4: mapping values are not allowed in this context"},
		{"tab indentation", "a: 1\n\tb: 2\n", "release.yaml:2: found a tab character that violates indentation"},
		{"second document", "a: 1\n---\nb: [1, 2\n", "release.yaml:3: did not find expected ',' or ']'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Bytes("release.yaml", []byte(tt.in), Options{})
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("err = %v, want *SyntaxError", err)
			}
			if !strings.HasPrefix(err.Error(), "release.yaml:") || se.Line == 0 {
				t.Errorf("err = %q, want file:line", err)
			}
			if tt.want != "" && err.Error() != tt.want {
				t.Errorf("err = %q, want %q", err, tt.want)
			}
		})
	}
}

func TestScanInputs(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("b.yaml", "image: b:1\n")
	write("a/z.yml", "image: z:1\n")
	write("a/y.json", `{"image": "y:1"}`)
	write("a/notes.txt", "image: no:1\n")
	write("c.YAML", "image: c:1\n")
	txt := write("explicit.txt", "image: explicit:1\n")

	refs, err := Scan(context.Background(), []string{dir, "-", txt}, Options{Stdin: strings.NewReader("image: stdin:1\n")})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range refs {
		rel, _ := filepath.Rel(dir, r.File)
		if r.File == StdinName {
			rel = r.File
		}
		got = append(got, rel+" "+r.Image)
	}
	want := []string{"a/y.json y:1", "a/z.yml z:1", "b.yaml b:1", "c.YAML c:1", "<stdin> stdin:1", "explicit.txt explicit:1"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}

	_, err = Scan(context.Background(), []string{filepath.Join(dir, "missing.yaml")}, Options{})
	if !errors.Is(err, fs.ErrNotExist) || !strings.HasPrefix(err.Error(), "reading "+filepath.Join(dir, "missing.yaml")+": no such file or directory") {
		t.Errorf("missing file: err = %v", err)
	}
	_, err = Scan(context.Background(), []string{"-", "-"}, Options{Stdin: strings.NewReader("")})
	if err == nil {
		t.Error("stdin twice: no error")
	}
	empty := filepath.Join(dir, "empty")
	os.Mkdir(empty, 0o755)
	if _, err = Scan(context.Background(), []string{empty}, Options{}); err == nil {
		t.Error("empty directory: no error")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err = Scan(ctx, []string{dir}, Options{}); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled: err = %v", err)
	}
}

func TestAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString(`a: &a ["image", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]` + "\n")
	prev := "a"
	for c := 'b'; c <= 'z'; c++ {
		fmt.Fprintf(&b, "%c: &%c [", c, c)
		for j := 0; j < 9; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString("*" + prev)
		}
		b.WriteString("]\n")
		prev = string(c)
	}
	b.WriteString("spec: {containers: [{image: nginx:1.25, x: *z}]}\n")
	refs, err := Bytes("bomb.yaml", []byte(b.String()), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"27 spec.containers[0].image nginx:1.25 field"}, images(refs)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// raceEnabled is set by race_test.go: the race detector slows parsing ten-fold.
var raceEnabled = false

// TestLarge scans a 50 MiB stream (8 MiB under -race) and finds every
// reference, in the right document. How the cost grows with the size is
// TestScanGrowsLinearly's to check.
func TestLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	size := 50 << 20
	if raceEnabled {
		size = 8 << 20
	}
	data, n := largeStream(size)
	refs, err := Bytes("large.yaml", data, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(refs) != 2*n {
		t.Errorf("found %d references in %d documents, want %d", len(refs), n, 2*n)
	}
	if last := refs[len(refs)-1]; last.Doc != n-1 {
		t.Errorf("last reference in document %d, want %d", last.Doc, n-1)
	}
}
