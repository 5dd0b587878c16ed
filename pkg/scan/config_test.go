package scan

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestUserRules(t *testing.T) {
	cfg := `apiVersion: ferry.dev/v1alpha1
kind: Config
searchRules:
- name: sidecar-arg
  kinds: [Deployment]
  path: spec.template.spec.containers[*].args
  valuePattern: "^--sidecar=(.+)$"
- name: image-keys
  keyPattern: "(?i)^(base|builder)Image$"
- name: one-env
  path: spec.template.spec.containers[name=manager].env[name=BUILDER].value
- name: plugin-list
  path: data.plugins
  valuePattern: "(?m)^- (\\S+)$"
`
	c, err := ParseConfig([]byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	in := `kind: Deployment
spec:
  template:
    spec:
      containers:
      - name: manager
        args: ["--sidecar=quay.io/x/sidecar:v1", "--other=quay.io/x/y:v1", "--sidecar={{ .Image }}"]
        env:
        - name: BUILDER
          value: registry.internal/builder
        - name: OTHER
          value: registry.internal/other
---
kind: StatefulSet
spec:
  template:
    spec:
      containers:
      - args: ["--sidecar=quay.io/x/sidecar:v2"]
---
kind: Build
spec:
  baseImage: alpine:3.20
  builderImage: [golang:1.23, "not a ref"]
  runImage: distroless:1
---
kind: ConfigMap
data:
  plugins: |
    - quay.io/p/one:v1
    - quay.io/p/two:v2
`
	refs, err := Bytes("in.yaml", []byte(in), Options{Config: c})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"7 spec.template.spec.containers[name=manager].args[0] quay.io/x/sidecar:v1 sidecar-arg",
		"10 spec.template.spec.containers[name=manager].env[name=BUILDER].value registry.internal/builder one-env",
		"23 spec.baseImage alpine:3.20 image-keys",
		"24 spec.builderImage[0] golang:1.23 image-keys",
		"30 data.plugins quay.io/p/one:v1 plugin-list",
		"31 data.plugins quay.io/p/two:v2 plugin-list",
	}
	if diff := cmp.Diff(want, images(refs)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	for _, r := range refs {
		if !strings.HasPrefix(in[r.Span.Offset:], r.Image) {
			t.Errorf("%s: offset %d does not hold %q", r.Location(), r.Span.Offset, r.Image)
		}
	}
}

func TestLoadConfigErrors(t *testing.T) {
	const head = "apiVersion: ferry.dev/v1alpha1\nkind: Config\n"
	tests := []struct {
		name, in, want string
	}{
		{"wrong kind", "apiVersion: v1\nkind: ConfigMap\n", `ferry.yaml: not a ferry config: want apiVersion ferry.dev/v1alpha1 and kind Config, found "v1" and "ConfigMap"`},
		{"unknown field", head + "searchRules:\n- name: a\n  keyPatern: x\n", `ferry.yaml: line 5: unknown field "keyPatern"`},
		{"no name", head + "searchRules:\n- keyPattern: x\n", "ferry.yaml: searchRules[0]: name is required"},
		{"nothing selected", head + "searchRules:\n- name: a\n", "ferry.yaml: searchRules[0] (a): set path, keyPattern or both to say which values to look at"},
		{"bad regexp", head + "searchRules:\n- name: a\n  keyPattern: '('\n", "ferry.yaml: searchRules[0] (a): keyPattern: error parsing regexp: missing closing ): `(`"},
		{"two groups", head + "searchRules:\n- name: a\n  path: x\n  valuePattern: '(a)(b)'\n", `ferry.yaml: searchRules[0] (a): valuePattern "(a)(b)" has 2 capture groups; use one, around the reference, and (?:...) for the others`},
		{"bad path", head + "searchRules:\n- name: a\n  path: spec..x\n", `ferry.yaml: searchRules[0] (a): path "spec..x": empty field name at ".x"`},
		{"bad selector", head + "searchRules:\n- name: a\n  path: spec.c[x\n", `ferry.yaml: searchRules[0] (a): path "spec.c[x": bad item selector at "[x": want [*], [N] or [key=value]`},
		{"built-in name", head + "searchRules:\n- name: env\n  keyPattern: x\n", "ferry.yaml: searchRules[0] (env): name \"env\" is already used; rule names must be unique and differ from the built-in field, args, env, configmap, configmap-embedded, split, kustomize, csv"},
		{"duplicate name", head + "searchRules:\n- name: a\n  keyPattern: x\n- name: a\n  keyPattern: y\n", "ferry.yaml: searchRules[1] (a): name \"a\" is already used; rule names must be unique and differ from the built-in field, args, env, configmap, configmap-embedded, split, kustomize, csv"},
		{"not yaml", "a: [\n", "ferry.yaml: line 1: did not find expected node content"},
		{"fault on a later line", head + "searchRules:\n- name: a\n keyPattern: x\n", "ferry.yaml: line 5: did not find expected key"},
	}
	dir := t.TempDir()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, "ferry.yaml")
			if err := os.WriteFile(p, []byte(tt.in), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := LoadConfig(p)
			if err == nil {
				t.Fatal("no error")
			}
			if got := strings.TrimPrefix(err.Error(), dir+string(filepath.Separator)); got != tt.want {
				t.Errorf("error:\n got %s\nwant %s", got, tt.want)
			}
		})
	}
	if _, err := LoadConfig(filepath.Join(dir, "missing.yaml")); err == nil || !strings.Contains(err.Error(), "missing.yaml: no such file or directory") {
		t.Errorf("missing file: %v", err)
	}
}
