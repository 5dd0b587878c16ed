package scan

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/ferry-dev/ferry/pkg/imageref"
	"sigs.k8s.io/kustomize/kyaml/yaml"
)

// SourceSplit is the Source of a reference written in parts (a repository
// in one key, its tag in another), assembled by scan.
const SourceSplit = "split"

// Roles of the parts of a split reference. The reference is
// REGISTRY/REPOSITORY:TAG@DIGEST, REGISTRY being a host, maybe with a path
// (nvcr.io/nvidia), and every part but the repository optional.
const (
	RoleRegistry   = "registry"
	RoleRepository = "repository"
	RoleTag        = "tag"
	RoleDigest     = "digest"
)

// Part is one piece of a split reference.
type Part struct {
	// Role is RoleRegistry, RoleRepository, RoleTag or RoleDigest.
	Role string `json:"role" yaml:"role"`
	// Path is the YAML path of the value holding it; Value is the value.
	Path  string `json:"path" yaml:"path"`
	Value string `json:"value" yaml:"value"`
	// Line is where the value is in the file.
	Line int `json:"line" yaml:"line"`
	// Span locates the value for pkg/rewrite; Offset is -1 when it
	// cannot be changed in place.
	Span Span `json:"-" yaml:"-"`
	// Key and KeySpan are the part's key and where it is, for a
	// Kustomization image, whose rewrite may change a key (newTag to digest).
	Key     string `json:"-" yaml:"-"`
	KeySpan Span   `json:"-" yaml:"-"`
}

// Note is something scan saw and did not report as a reference, with why:
// one line per site, e.g. a name whose tag cannot be assembled.
type Note struct {
	File string
	Line int
	Path string
	Msg  string
}

func (n Note) String() string { return fmt.Sprintf("%s:%d: %s: %s", n.File, n.Line, n.Path, n.Msg) }

// Keys that hold the tag of an untagged `image` near them, and keys in the
// same mapping that hold the registry (and maybe a path) in front of it.
var (
	tagKeys    = []string{"tag", "version", "imageTag", "imageVersion"}
	prefixKeys = []string{"repository", "registry", "hub", "imageRepository", "imageRegistry"}
)

// MirrorHint says what to do with a reference ferry cannot carry or rewrite.
const MirrorHint = "mirror it with a node-level registry mirror (ferry mirror-config) or the admission webhook"

// splitPart is a part found in a mapping.
type splitPart struct {
	role string
	node *yaml.Node
	path string
	// outer is set for a part in YAML text held in the scalar outer (a
	// ConfigMap value, the outerOrd-th scalar): node is then in that text,
	// at byte voff of outer's value.
	outer    *yaml.Node
	outerOrd int
	voff     int
	// key is the part's key node, for rules whose rewrite changes keys.
	key *yaml.Node
}

// ancestorsMaps returns the mappings from the one being visited (m, at
// w.path) up to the resource root, stopping at a list: the values a
// workload's own keys can see.
func (w *walker) ancestorMaps(m *yaml.Node) []struct {
	m     *yaml.Node
	depth int
} {
	out := []struct {
		m     *yaml.Node
		depth int
	}{{m, len(w.path)}}
	for i := len(w.path) - 1; i >= w.res.depth; i-- {
		s := w.path[i]
		if s.index >= 0 || s.m == nil {
			break
		}
		out = append(out, struct {
			m     *yaml.Node
			depth int
		}{s.m, i})
	}
	return out
}

// stringScalar returns m's value at key when it is a non-empty string scalar
// that is no template.
func stringScalar(m *yaml.Node, key string) *yaml.Node {
	n := lookup(m, key)
	if n == nil || n.Kind != yaml.ScalarNode || !isString(n) || strings.TrimSpace(n.Value) == "" || placeholder(n.Value) {
		return nil
	}
	return n
}

// anyScalar is stringScalar for values such as tags, which YAML may read as
// a number (version: 1.20).
func anyScalar(m *yaml.Node, key string) *yaml.Node {
	n := lookup(m, key)
	if n == nil || n.Kind != yaml.ScalarNode || n.ShortTag() == "!!null" || strings.TrimSpace(n.Value) == "" || placeholder(n.Value) {
		return nil
	}
	return n
}

// hasHost reports a name whose first part is a registry host.
func hasHost(s string) bool {
	first, _, ok := strings.Cut(s, "/")
	return ok && (strings.ContainsAny(first, ".:") || first == "localhost")
}

// splits looks for references written in parts in the mapping m, at w.path.
func (w *walker) splits(m *yaml.Node) {
	w.siblingTag(m)
	if len(w.path) > w.res.depth {
		if last := w.path[len(w.path)-1]; last.index < 0 && imageWordRE.MatchString(last.key) {
			w.imageMap(m, func(k string) string { return w.pathAt(len(w.path), k) }, nil)
		}
	}
	if w.kustomization() && len(w.path) == w.res.depth+2 && w.path[w.res.depth].key == "images" && w.path[w.res.depth+1].index >= 0 {
		w.kustomizeImage(m)
	}
	for _, r := range w.rules {
		if r.parts != nil {
			r.matchParts(w, m)
		}
	}
}

// Keys of the parts in an image map (Helm's image: {registry, repository, tag, digest}).
var (
	mapRepoKeys = []string{"repository", "name"}
	mapTagKeys  = []string{"tag", "version"}
)

// imageMap: a mapping under a key saying image, holding a repository (or
// name) and a tag (or version) or digest, and maybe a registry. wrap, when
// set, places the parts in YAML text held by another scalar.
func (w *walker) imageMap(m *yaml.Node, path func(string) string, wrap func(*splitPart)) {
	var repo *yaml.Node
	var repoKey string
	for _, k := range mapRepoKeys {
		if repo = stringScalar(m, k); repo != nil {
			repoKey = k
			break
		}
	}
	if repo == nil {
		return
	}
	if r, err := imageref.Parse(repo.Value); err != nil || r.Tag != "" || r.Digest != "" {
		return
	}
	parts := []splitPart{}
	if n := stringScalar(m, "registry"); n != nil {
		parts = append(parts, splitPart{role: RoleRegistry, node: n, path: path("registry")})
	}
	parts = append(parts, splitPart{role: RoleRepository, node: repo, path: path(repoKey)})
	tagged := false
	for _, k := range mapTagKeys {
		if n := anyScalar(m, k); n != nil {
			parts = append(parts, splitPart{role: RoleTag, node: n, path: path(k)})
			tagged = true
			break
		}
	}
	if n := lookup(m, "digest"); n != nil && n.Kind == yaml.ScalarNode {
		parts = append(parts, splitPart{role: RoleDigest, node: n, path: path("digest")})
		tagged = tagged || digestPartRE.MatchString(n.Value)
	}
	if !tagged {
		// Helm charts fill in an empty tag (often with the chart's appVersion).
		return
	}
	if wrap != nil {
		for i := range parts {
			wrap(&parts[i])
		}
	}
	w.emitSplit(parts, SourceSplit)
}

// nameVersion: in YAML held by a ConfigMap, a mapping with a name that is a
// repository on a registry host and a version (linkerd's proxy image).
func (w *walker) nameVersion(m *yaml.Node, path func(string) string, wrap func(*splitPart)) {
	name := stringScalar(m, "name")
	if name == nil || !hasHost(name.Value) {
		return
	}
	if r, err := imageref.Parse(name.Value); err != nil || r.Tag != "" || r.Digest != "" {
		return
	}
	ver := anyScalar(m, "version")
	if ver == nil {
		return
	}
	parts := []splitPart{{role: RoleRepository, node: name, path: path("name")}, {role: RoleTag, node: ver, path: path("version")}}
	for i := range parts {
		wrap(&parts[i])
	}
	w.emitSplit(parts, SourceSplit)
}

// embeddedSplits looks for image maps and name/version pairs in YAML (or
// JSON) text held by the ConfigMap value n, the ord-th scalar.
//
// It returns the offsets in the value of the `image` values a split took.
func (w *walker) embeddedSplits(n *yaml.Node, ord int) map[int]bool {
	v := n.Value
	taken := map[int]bool{}
	if !strings.Contains(v, "version") && !strings.Contains(v, "tag") && !strings.Contains(v, "digest") {
		return taken
	}
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(v), &doc); err != nil {
		return taken
	}
	// A walker over the value's text, to place its nodes in it.
	in := &walker{data: []byte(v), breaks: parserLineStarts([]byte(v))}
	outer := w.pathString()
	wrap := func(p *splitPart) {
		// -1 when not placed: scan reports it, rewrite cannot change it.
		p.outer, p.outerOrd, p.voff = n, ord, in.locate(p.node, 0, p.node.Value)
	}
	var walk func(m *yaml.Node, path []seg, levels []level)
	walk = func(m *yaml.Node, path []seg, levels []level) {
		switch m.Kind {
		case yaml.DocumentNode:
			for _, c := range m.Content {
				walk(c, path, nil)
			}
		case yaml.SequenceNode:
			for i, c := range m.Content {
				walk(c, append(path, seg{index: i, seq: m}), nil)
			}
		case yaml.MappingNode:
			at := func(k string) string {
				return outer + ":" + pathOf(append(path[:len(path):len(path)], seg{key: k, index: -1}))
			}
			levels = append([]level{{m, at}}, levels...)
			if len(path) > 0 {
				if last := path[len(path)-1]; last.index < 0 && imageWordRE.MatchString(last.key) {
					w.imageMap(m, at, wrap)
				}
			}
			if w.siblingTagIn(levels, wrap) {
				if img := lookup(m, "image"); img != nil {
					taken[in.locate(img, 0, img.Value)] = true
				}
			}
			w.nameVersion(m, at, wrap)
			for i := 0; i+1 < len(m.Content); i += 2 {
				walk(m.Content[i+1], append(path, seg{key: m.Content[i].Value, index: -1}), levels)
			}
		}
	}
	walk(&doc, nil, nil)
	return taken
}

// level is a mapping and how to name the path of a key in it.
type level struct {
	m    *yaml.Node
	path func(key string) string
}

// siblingTag: an `image` holding a name without tag or digest, with a tag
// or version key beside it or above it (spec.upgrade.image with
// spec.version), and maybe a registry key beside it or above it, up to
// where the tag is (repository: nvcr.io/nvidia, image: driver, version:
// "580.1"; istio's global.hub, global.tag and global.proxy.image).
func (w *walker) siblingTag(m *yaml.Node) {
	var levels []level
	for _, a := range w.ancestorMaps(m) {
		depth := a.depth
		levels = append(levels, level{a.m, func(k string) string { return w.pathAt(depth, k) }})
	}
	w.siblingTagIn(levels, nil)
}

// siblingTagIn is siblingTag on levels, levels[0] holding the image;
// wrap, when set, places the parts in YAML text held by another scalar.
// It reports whether it took the image.
func (w *walker) siblingTagIn(levels []level, wrap func(*splitPart)) bool {
	m := levels[0].m
	img := stringScalar(m, "image")
	if img == nil {
		return false
	}
	r, err := imageref.Parse(img.Value)
	if err != nil || r.Tag != "" || r.Digest != "" {
		return false
	}
	var tag *splitPart
	top := 0
	for i, l := range levels {
		for _, k := range tagKeys {
			if n := anyScalar(l.m, k); n != nil {
				tag = &splitPart{role: RoleTag, node: n, path: l.path(k)}
				top = i
				break
			}
		}
		if tag != nil {
			break
		}
	}
	if tag == nil {
		return false
	}
	parts := []splitPart{}
	if !hasHost(img.Value) {
	prefix:
		for _, l := range levels[:top+1] {
			for _, k := range prefixKeys {
				if n := stringScalar(l.m, k); n != nil {
					parts = append(parts, splitPart{role: RoleRegistry, node: n, path: l.path(k)})
					break prefix
				}
			}
		}
	}
	parts = append(parts, splitPart{role: RoleRepository, node: img, path: levels[0].path("image")}, *tag)
	if wrap != nil {
		for i := range parts {
			wrap(&parts[i])
		}
	}
	w.emitSplit(parts, SourceSplit)
	return true
}

// tagFromVersion writes a version as a tag: a '+' (semver build metadata,
// v1.20.11+k3s1) becomes '-', as k3s, RKE2 and Docker's own convention do.
func tagFromVersion(v string) string { return strings.ReplaceAll(v, "+", "-") }

var digestPartRE = regexp.MustCompile(`^[a-z0-9]+:[a-fA-F0-9]{32,}$`)

// Assemble writes the whole reference that parts name.
func Assemble(parts []Part) string {
	var reg, repo, tag, dig string
	for _, p := range parts {
		switch p.Role {
		case RoleRegistry:
			reg = strings.TrimSuffix(p.Value, "/")
		case RoleRepository:
			repo = strings.TrimPrefix(p.Value, "/")
		case RoleTag:
			tag = tagFromVersion(p.Value)
		case RoleDigest:
			dig = p.Value
		}
	}
	s := repo
	if reg != "" {
		s = reg + "/" + repo
	}
	if tag != "" {
		s += ":" + tag
	}
	if dig != "" {
		s += "@" + dig
	}
	return s
}

// emitSplit reports the reference parts make, or a note saying why not.
// The repository part is where it is reported (line, path), and is taken
// from the `image` field rule.
func (w *walker) emitSplit(sp []splitPart, source string) {
	parts := make([]Part, 0, len(sp))
	var repo Part
	for _, p := range sp {
		if p.role == RoleDigest && !digestPartRE.MatchString(p.node.Value) && !(p.node.Value == "" && isString(p.node)) {
			// A placeholder or null says no digest; "" is kept, for rewrite to fill.
			continue
		}
		pt := Part{Role: p.role, Path: p.path, Value: p.node.Value}
		switch {
		case p.outer != nil:
			pt.Span = Span{Offset: -1, Scalar: p.outerOrd, ValueOffset: max(p.voff, 0), Value: p.outer.Value}
			if p.voff >= 0 {
				pt.Span.Offset = w.locate(p.outer, p.voff, p.node.Value)
			}
		default:
			pt.Span = Span{Offset: w.locate(p.node, 0, p.node.Value), Scalar: w.ordinal(p.node), Value: p.node.Value}
			if p.key != nil {
				pt.Key = p.key.Value
				pt.KeySpan = Span{Offset: w.locate(p.key, 0, p.key.Value), Scalar: w.ordinal(p.key), Value: p.key.Value}
				if pt.KeySpan.Offset >= 0 {
					pt.KeySpan.Offset += w.base
				}
			}
		}
		if pt.Span.Offset >= 0 {
			pt.Line, _ = w.position(pt.Span.Offset)
			pt.Span.Offset += w.base
		} else if p.outer != nil {
			pt.Line = w.pline0 + p.outer.Line
		} else {
			pt.Line = w.pline0 + p.node.Line
		}
		if p.role == RoleRepository {
			repo = pt
			w.claimed[p.node] = true
		}
		parts = append(parts, pt)
	}
	ref := Assemble(parts)
	if _, err := imageref.Parse(ref); err != nil {
		var vals []string
		for _, p := range parts {
			vals = append(vals, p.Path+" "+Quote(p.Value))
		}
		w.notes = append(w.notes, Note{File: w.file, Line: repo.Line, Path: repo.Path,
			Msg: fmt.Sprintf("the image is written in parts (%s) that make no valid reference (%v): not reported; %s", strings.Join(vals, ", "), err.(*imageref.InvalidError).Reason, MirrorHint)})
		return
	}
	key := [2]int{repo.Span.Scalar, -1 - repo.Span.ValueOffset}
	if w.seen[key] {
		return
	}
	w.seen[key] = true
	r := Ref{
		Image: ref, File: w.file, Doc: w.doc, Kind: w.res.kind, Name: w.res.name,
		Path: repo.Path, Source: source, Parts: parts,
		Span: Span{Offset: -1, Scalar: repo.Span.Scalar},
	}
	r.Line, r.Column = repo.Line, 0
	if repo.Span.Offset >= 0 {
		r.Line, r.Column = w.position(repo.Span.Offset - w.base)
	}
	w.refs = append(w.refs, r)
}

// ordinal returns n's scalar ordinal in the document (see ForEachScalar),
// counting the document's scalars once, when a split needs it.
func (w *walker) ordinal(n *yaml.Node) int {
	if w.ords == nil {
		w.ords = map[*yaml.Node]int{}
		ForEachScalar(w.root, w.ordBase, func(i int, s *yaml.Node) { w.ords[s] = i })
	}
	if i, ok := w.ords[n]; ok {
		return i
	}
	return -1
}

// SourceKustomize is the Source of an image override in a Kustomization's
// images list ({name, newName, newTag | digest}).
const SourceKustomize = "kustomize"

// kustomization reports a kustomize Kustomization or Component.
func (w *walker) kustomization() bool {
	return (w.res.kind == "Kustomization" || w.res.kind == "Component") && strings.HasPrefix(w.res.apiVersion, "kustomize.config.k8s.io/")
}

// keyOf returns the key node of key in m.
func keyOf(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Kind == yaml.ScalarNode && m.Content[i].Value == key {
			return m.Content[i]
		}
	}
	return nil
}

// kustomizeImage: an item of a Kustomization's images list. The image is
// newName (else name) with newTag and/or digest; name alone matches the
// base's images and names none.
func (w *walker) kustomizeImage(m *yaml.Node) {
	name := stringScalar(m, "name")
	if name == nil {
		return
	}
	repoKey := "name"
	if n := stringScalar(m, "newName"); n != nil {
		repoKey = "newName"
	}
	part := func(role, key string, n *yaml.Node) splitPart {
		return splitPart{role: role, node: n, path: w.pathAt(len(w.path), key), key: keyOf(m, key)}
	}
	parts := []splitPart{part(RoleRepository, repoKey, lookup(m, repoKey))}
	tag, dig := anyScalar(m, "newTag"), stringScalar(m, "digest")
	if tag != nil {
		parts = append(parts, part(RoleTag, "newTag", tag))
	}
	if dig != nil {
		parts = append(parts, part(RoleDigest, "digest", dig))
	}
	if tag == nil && dig == nil {
		if repoKey == "newName" {
			w.notes = append(w.notes, Note{File: w.file, Line: w.pline0 + m.Line, Path: w.pathAt(len(w.path), "newName"),
				Msg: fmt.Sprintf("%s keeps the tag of the base's %s, which is not here: not reported; scan the base and the overlay together (kustomize build | ferry scan -f -)", Quote(parts[0].node.Value), Quote(name.Value))})
		}
		return
	}
	w.emitSplit(parts, SourceKustomize)
}
