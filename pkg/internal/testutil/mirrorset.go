package testutil

import (
	"bytes"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"
)

// What OpenShift's mirror sets are, written out here rather than taken
// from pkg/mirrorconfig, so that the check does not agree with the code
// by construction.
const (
	mirrorSetAPIVersion = "config.openshift.io/v1"
	kindIDMS            = "ImageDigestMirrorSet"
	kindITMS            = "ImageTagMirrorSet"
)

// The structure of ImageDigestMirrorSet and ImageTagMirrorSet as the CRDs
// of github.com/openshift/api (config/v1, imagedigestmirrorsets and
// imagetagmirrorsets) define it: the field names, the required ones, the
// enum of mirrorSourcePolicy, and the grammar of source and mirrors
// (host[:port][/path], source also "*.domain"). The quick judge: the
// real one applies the CRDs to kube-apiserver (TestClusterOpenShiftMirrorSets); the golden files
// in pkg/mirrorconfig/testdata/ (idms*.golden) are what such a judge
// applies. It shares no code with pkg/mirrorconfig.
var (
	msHostPart   = `(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])`
	msPathPart   = `[a-z0-9]+(?:(?:[._]|__|-*)[a-z0-9]+)*`
	msLocationRE = regexp.MustCompile(`^` + msHostPart + `(?:\.` + msHostPart + `)*(?::[0-9]+)?(?:/` + msPathPart + `)*$`)
	msWildcardRE = regexp.MustCompile(`^\*(?:\.` + msHostPart + `)+$`)
	msPolicies   = []string{"AllowContactingSource", "NeverContactSource"}
)

// CheckMirrorSet checks one object (YAML or JSON) against that
// structure: no field the CRD lacks, every field it requires, and values
// it accepts.
func CheckMirrorSet(doc []byte) error {
	var obj map[string]any
	if err := yaml.UnmarshalStrict(doc, &obj); err != nil {
		return err
	}
	listKey := map[string]string{
		kindIDMS: "imageDigestMirrors",
		kindITMS: "imageTagMirrors",
	}
	kind, _ := obj["kind"].(string)
	key, ok := listKey[kind]
	if !ok {
		return fmt.Errorf("kind %q: want %s or %s", obj["kind"], kindIDMS, kindITMS)
	}
	if obj["apiVersion"] != mirrorSetAPIVersion {
		return fmt.Errorf("apiVersion %q: want %s", obj["apiVersion"], mirrorSetAPIVersion)
	}
	if err := mirrorSetKeys("", obj, []string{"apiVersion", "kind", "metadata", "spec", "status"}, []string{"metadata", "spec"}); err != nil {
		return err
	}
	meta, ok := obj["metadata"].(map[string]any)
	if !ok {
		return fmt.Errorf("metadata: want an object")
	}
	if name, _ := meta["name"].(string); name == "" {
		return fmt.Errorf("metadata.name: required (the objects are cluster-scoped)")
	}
	if _, ok := meta["namespace"]; ok {
		return fmt.Errorf("metadata.namespace: the objects are cluster-scoped")
	}
	spec, ok := obj["spec"].(map[string]any)
	if !ok {
		return fmt.Errorf("spec: want an object")
	}
	if err := mirrorSetKeys("spec", spec, []string{key}, nil); err != nil {
		return err
	}
	list, ok := spec[key].([]any)
	if !ok && spec[key] != nil {
		return fmt.Errorf("spec.%s: want a list", key)
	}
	for i, it := range list {
		at := fmt.Sprintf("spec.%s[%d]", key, i)
		entry, ok := it.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: want an object", at)
		}
		if err := mirrorSetKeys(at, entry, []string{"source", "mirrors", "mirrorSourcePolicy"}, []string{"source"}); err != nil {
			return err
		}
		src, _ := entry["source"].(string)
		if !msLocationRE.MatchString(src) && !msWildcardRE.MatchString(src) {
			return fmt.Errorf("%s.source %q: want host[:port][/namespace...][/repo] or *.domain", at, entry["source"])
		}
		mirrors, ok := entry["mirrors"].([]any)
		if !ok && entry["mirrors"] != nil {
			return fmt.Errorf("%s.mirrors: want a list", at)
		}
		seen := map[string]bool{}
		for j, m := range mirrors {
			s, _ := m.(string)
			if !msLocationRE.MatchString(s) {
				return fmt.Errorf("%s.mirrors[%d] %q: want host[:port][/namespace...][/repo]", at, j, m)
			}
			if seen[s] {
				return fmt.Errorf("%s.mirrors[%d] %q: listed twice, the list is a set", at, j, s)
			}
			seen[s] = true
		}
		if p, ok := entry["mirrorSourcePolicy"]; ok && !slices.Contains(msPolicies, fmt.Sprint(p)) {
			return fmt.Errorf("%s.mirrorSourcePolicy %q: want one of %v", at, p, msPolicies)
		}
	}
	return nil
}

// mirrorSetKeys refuses keys of m not in allowed and missing required ones.
func mirrorSetKeys(at string, m map[string]any, allowed, required []string) error {
	if at == "" {
		at = "the object"
	}
	var extra []string
	for k := range m {
		if !slices.Contains(allowed, k) {
			extra = append(extra, k)
		}
	}
	sort.Strings(extra)
	if len(extra) > 0 {
		return fmt.Errorf("%s: unknown field(s) %v: want only %v", at, extra, allowed)
	}
	for _, k := range required {
		if _, ok := m[k]; !ok {
			return fmt.Errorf("%s: %s is required", at, k)
		}
	}
	return nil
}

// SplitYAML splits a multi-document YAML stream, dropping comments-only
// documents.
func SplitYAML(b []byte) [][]byte {
	var out [][]byte
	for _, d := range bytes.Split(b, []byte("\n---\n")) {
		var body bool
		for _, l := range strings.Split(string(d), "\n") {
			if t := strings.TrimSpace(l); t != "" && t != "---" && !strings.HasPrefix(t, "#") {
				body = true
			}
		}
		if body {
			out = append(out, d)
		}
	}
	return out
}
