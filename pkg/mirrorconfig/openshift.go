package mirrorconfig

import (
	"bytes"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/ferry-dev/ferry/pkg/imageref"
	"sigs.k8s.io/yaml"
)

// OpenShift's mirror sets (config.openshift.io/v1), which the Machine
// Config Operator renders into every node's registries.conf.
const (
	// MirrorSetAPIVersion is the group and version of both kinds.
	MirrorSetAPIVersion = "config.openshift.io/v1"
	// KindDigestMirrorSet sends pulls by digest to the mirrors.
	KindDigestMirrorSet = "ImageDigestMirrorSet"
	// KindTagMirrorSet sends pulls by tag to the mirrors.
	KindTagMirrorSet = "ImageTagMirrorSet"
	// MirrorSetName is the metadata.name of the objects ferry writes.
	MirrorSetName = "ferry"
)

// The values of mirrorSourcePolicy.
const (
	// AllowContactingSource falls back to the source registry, as
	// containerd and CRI-O do with ferry's other formats (the default).
	AllowContactingSource = "AllowContactingSource"
	// NeverContactSource fails a pull the mirrors cannot serve instead.
	NeverContactSource = "NeverContactSource"
)

// MirrorSet is an ImageDigestMirrorSet or ImageTagMirrorSet, with only the
// fields ferry fills.
type MirrorSet struct {
	APIVersion string        `json:"apiVersion"`
	Kind       string        `json:"kind"`
	Metadata   MirrorSetMeta `json:"metadata"`
	Spec       MirrorSetSpec `json:"spec"`
}

// MirrorSetMeta is the object's metadata.
type MirrorSetMeta struct {
	Name string `json:"name"`
}

// MirrorSetSpec holds imageDigestMirrors (ImageDigestMirrorSet) or
// imageTagMirrors (ImageTagMirrorSet).
type MirrorSetSpec struct {
	ImageDigestMirrors []ImageMirrors `json:"imageDigestMirrors,omitempty"`
	ImageTagMirrors    []ImageMirrors `json:"imageTagMirrors,omitempty"`
}

// ImageMirrors sends pulls of Source (a registry, or a repository prefix)
// to Mirrors, tried in order, the source path kept below each.
type ImageMirrors struct {
	Source  string   `json:"source"`
	Mirrors []string `json:"mirrors"`
	// MirrorSourcePolicy is "" (the source is tried last),
	// AllowContactingSource or NeverContactSource.
	MirrorSourcePolicy string `json:"mirrorSourcePolicy,omitempty"`
}

// MirrorSets builds an ImageDigestMirrorSet with every source registry
// and its mirrors, and an ImageTagMirrorSet with the mirrors that received
// tags: a lock entry written with a tag (or none, which is latest) kept its
// repository path, and relocate and unpkg push the tag as written in those
// layouts. No ImageTagMirrorSet when every entry was written by digest.
func MirrorSets(regs []Registry, o Options) []MirrorSet {
	policy := ""
	if o.NeverContactSource {
		policy = NeverContactSource
	}
	var digest, tag []ImageMirrors
	for _, r := range regs {
		d := ImageMirrors{Source: r.Host, MirrorSourcePolicy: policy}
		t := ImageMirrors{Source: r.Host, MirrorSourcePolicy: policy}
		for _, m := range r.Mirrors {
			d.Mirrors = appendNew(d.Mirrors, m.Location())
			if m.tagged() {
				t.Mirrors = appendNew(t.Mirrors, m.Location())
			}
		}
		digest = append(digest, d)
		if len(t.Mirrors) > 0 {
			tag = append(tag, t)
		}
	}
	sets := []MirrorSet{{
		APIVersion: MirrorSetAPIVersion,
		Kind:       KindDigestMirrorSet,
		Metadata:   MirrorSetMeta{Name: MirrorSetName},
		Spec:       MirrorSetSpec{ImageDigestMirrors: digest},
	}}
	if len(tag) > 0 {
		sets = append(sets, MirrorSet{
			APIVersion: MirrorSetAPIVersion,
			Kind:       KindTagMirrorSet,
			Metadata:   MirrorSetMeta{Name: MirrorSetName},
			Spec:       MirrorSetSpec{ImageTagMirrors: tag},
		})
	}
	return sets
}

// appendNew appends s unless list holds it: the schema wants mirrors to
// be a set.
func appendNew(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

// tagged reports whether any image of m was written with a tag (or with
// neither tag nor digest: latest), which was pushed along with it.
func (m Mirror) tagged() bool {
	for _, im := range m.Images {
		if r, err := imageref.Parse(im); err == nil && r.TagOrLatest() != "" {
			return true
		}
	}
	return false
}

// WriteMirrorSets writes the objects of MirrorSets as one multi-document
// YAML stream, for `oc apply -f`, headed by comments saying how the
// cluster learns about plain-HTTP mirrors and private CAs, which the
// mirror sets cannot carry.
func WriteMirrorSets(w io.Writer, regs []Registry, o Options) error {
	o, err := o.check()
	if err != nil {
		return err
	}
	var b bytes.Buffer
	b.WriteString("# Written by ferry mirror-config: OpenShift mirror sets (config.openshift.io/v1).\n")
	b.WriteString("# Apply with oc apply -f; the Machine Config Operator writes them into every\n")
	b.WriteString("# node's registries.conf (nodes are updated one by one).\n")
	writeClusterHints(&b, regs, o)
	for _, s := range MirrorSets(regs, o) {
		y, err := yaml.Marshal(s)
		if err != nil {
			return fmt.Errorf("rendering the %s: %w", s.Kind, err)
		}
		b.WriteString("---\n")
		b.Write(y)
	}
	_, err = w.Write(b.Bytes())
	return err
}

// writeClusterHints says, in comments, what image.config.openshift.io/cluster
// needs for the mirrors named by --insecure-registry and --registry-ca-cert.
func writeClusterHints(b *bytes.Buffer, regs []Registry, o Options) {
	var insecure, trusted []string
	seen := map[string]bool{}
	for _, r := range regs {
		for _, m := range r.Mirrors {
			if seen[m.Host] {
				continue
			}
			seen[m.Host] = true
			if o.insecure(m.Host) {
				insecure = append(insecure, m.Host)
			} else if len(o.CACertFiles) > 0 {
				trusted = append(trusted, m.Host)
			}
		}
	}
	sort.Strings(insecure)
	sort.Strings(trusted)
	if len(insecure) > 0 {
		b.WriteString("#\n# Plain HTTP (--insecure-registry): list these in image.config.openshift.io/cluster\n")
		fmt.Fprintf(b, "# spec.registrySources.insecureRegistries: %s\n", strings.Join(insecure, ", "))
	}
	if len(trusted) > 0 {
		b.WriteString("#\n# Private CA (--registry-ca-cert): a ConfigMap in openshift-config with one key per\n")
		b.WriteString("# mirror (host, \"..PORT\" for \":PORT\"), named by image.config.openshift.io/cluster:\n")
		var from []string
		for _, h := range trusted {
			for _, f := range o.CACertFiles {
				from = append(from, "--from-file="+strings.Replace(h, ":", "..", 1)+"="+f)
				break // one CA file per key; put several CAs into one PEM file
			}
		}
		fmt.Fprintf(b, "#   oc create configmap ferry-registry-ca -n openshift-config %s\n", strings.Join(from, " "))
		b.WriteString("#   oc patch image.config.openshift.io/cluster --type merge -p '{\"spec\":{\"additionalTrustedCA\":{\"name\":\"ferry-registry-ca\"}}}'\n")
	}
}
