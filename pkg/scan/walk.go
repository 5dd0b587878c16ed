package scan

import (
	"bytes"
	"regexp"
	"strconv"
	"strings"

	"github.com/ferry-dev/ferry/pkg/imageref"
	"sigs.k8s.io/kustomize/kyaml/yaml"
)

// Names of the built-in rules, as hits report them in Source.
const (
	// SourceArgs: `--some-image=REF` items, or a `-some-image` item followed
	// by a REF item, in an args or command list.
	SourceArgs = "args"
	// SourceEnv: env values whose name says IMAGE (including multi-line
	// `version=REF` lists), and fully qualified references in any env value.
	SourceEnv = "env"
	// SourceConfigMap: a ConfigMap data value that is a reference.
	SourceConfigMap = "configmap"
	// SourceConfigMapEmbedded: `image: REF` or `"image": "REF"` lines in
	// YAML, JSON or template text held in ConfigMap data.
	SourceConfigMapEmbedded = "configmap-embedded"
	// SourceCSV: an OLM ClusterServiceVersion's
	// metadata.annotations.containerImage (the operator's image, which
	// disconnected-install checks read).
	SourceCSV = "csv"
)

// builtinNames may not be reused by user rules.
var builtinNames = []string{SourceField, SourceArgs, SourceEnv, SourceConfigMap, SourceConfigMapEmbedded, SourceSplit, SourceKustomize, SourceCSV}

// wellKnownFlags are image flags whose name does not say "image".
var wellKnownFlags = map[string]bool{
	"prometheus-config-reloader": true,
}

var (
	imageWordRE = regexp.MustCompile(`(?i)image`)
	// embeddedRE finds `image: REF`, `- image: "REF"` and `"image" : "REF",`
	// lines, and keys ending in Image/_image, in text that is YAML or JSON.
	embeddedRE = regexp.MustCompile(`(?m)^[ \t]*(?:-[ \t]+)?["']?(image|[A-Za-z_-]*Image|[A-Za-z_-]*_image)["']?[ \t]*:[ \t]*["']?([^\s"',{}\[\]#]+)["']?[ \t]*,?[ \t]*(?:#.*)?\r?$`)
)

// seg is one step of the path from the document root to a node.
type seg struct {
	key   string     // the mapping key; "" for a sequence item
	index int        // the item's index; -1 for a mapping value
	seq   *yaml.Node // the sequence holding the item
	m     *yaml.Node // the mapping holding the key
	// shown is added to index in paths: a List item scanned on its own is
	// item 0 of its piece (see stream.piece).
	shown int
}

// resource is the Kubernetes object being walked: the document, or an item
// of a List.
type resource struct {
	apiVersion, kind, name string
	depth                  int  // len(path) at the object's root
	skip                   bool // policy documents whose image values are patterns
}

type walker struct {
	file string
	// data is one part of the file (see Documents), which starts at byte
	// base, after line0 lines (pline0 as the parser counts them).
	data   []byte
	base   int
	line0  int
	pline0 int
	lines  []int // line starts for reporting (after \n)
	// breaks are line starts as the parser counts them, for its positions.
	breaks []int
	bom    int
	rules  []*Rule

	doc     int
	scalars int
	anchors map[*yaml.Node]int
	path    []seg
	res     resource
	refs    []Ref
	seen    map[[2]int]bool
	notes   []Note

	// For split references: the document, its scalars' ordinals (counted
	// when first needed, from ordBase), and image values a split took.
	root    *yaml.Node
	ords    map[*yaml.Node]int
	ordBase int
	claimed map[*yaml.Node]bool

	// header, when set, is the resource of a List whose header keys are
	// walked apart from its items (see stream.piece).
	header *resource
}

func (w *walker) document(n *yaml.Node) {
	w.anchors = map[*yaml.Node]int{}
	w.root, w.ords, w.ordBase, w.claimed = n, nil, w.scalars, map[*yaml.Node]bool{}
	w.path = w.path[:0]
	w.res = resource{}
	for _, c := range n.Content {
		w.visit(c, true)
	}
}

func resourceOf(n *yaml.Node, depth int) resource {
	r := resource{depth: depth}
	if n.Kind != yaml.MappingNode {
		return r
	}
	r.apiVersion = scalarValue(lookup(n, "apiVersion"))
	r.kind = scalarValue(lookup(n, "kind"))
	if md := lookup(n, "metadata"); md != nil {
		r.name = scalarValue(lookup(md, "name"))
	}
	r.skip = strings.Contains(r.apiVersion, "kyverno.io/")
	return r
}

func lookup(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Kind == yaml.ScalarNode && n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

func scalarValue(n *yaml.Node) string {
	if n == nil || n.Kind != yaml.ScalarNode {
		return ""
	}
	return n.Value
}

// visit walks n in document order, counting scalars so that pkg/rewrite can
// find the same nodes again (see ForEachScalar). Aliases are not followed
// into, so that an alias bomb stays as small as its text.
func (w *walker) visit(n *yaml.Node, resRoot bool) {
	saved := w.res
	if resRoot {
		w.res = resourceOf(n, len(w.path))
		if w.header != nil && len(w.path) == 0 {
			w.res = *w.header
		}
	}
	switch n.Kind {
	case yaml.ScalarNode:
		ord := w.scalars
		w.scalars++
		if n.Anchor != "" {
			w.anchors[n] = ord
		}
		w.scalar(n, ord)
	case yaml.AliasNode:
		if t := n.Alias; t != nil && t.Kind == yaml.ScalarNode {
			if ord, ok := w.anchors[t]; ok {
				w.scalar(t, ord)
			}
		}
	case yaml.MappingNode:
		isList := resRoot && strings.HasSuffix(w.res.kind, "List")
		if !w.res.skip {
			w.splits(n)
		}
		for i := 0; i < len(n.Content); i += 2 {
			k := n.Content[i]
			if k.Kind == yaml.ScalarNode {
				// Keys are counted, never matched.
				w.scalars++
			} else {
				w.visit(k, false)
			}
			if i+1 >= len(n.Content) {
				break
			}
			w.path = append(w.path, seg{key: k.Value, index: -1, m: n})
			v := n.Content[i+1]
			if isList && k.Value == "items" && v.Kind == yaml.SequenceNode {
				w.items(v)
			} else {
				w.visit(v, false)
			}
			w.path = w.path[:len(w.path)-1]
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			w.path = append(w.path, seg{index: i, seq: n})
			w.visit(c, false)
			w.path = w.path[:len(w.path)-1]
		}
	case yaml.DocumentNode:
		for _, c := range n.Content {
			w.visit(c, false)
		}
	}
	w.res = saved
}

// items walks the items of a List, each its own resource.
func (w *walker) items(n *yaml.Node) {
	for i, c := range n.Content {
		w.path = append(w.path, seg{index: i, seq: n})
		w.visit(c, true)
		w.path = w.path[:len(w.path)-1]
	}
}

// isString reports whether a scalar is a string: a quoted or block scalar,
// or a plain one that YAML does not read as a number, bool or null.
func isString(n *yaml.Node) bool { return n.ShortTag() == "!!str" }

// placeholder reports values that are templates or patterns, not references:
// Helm/Go templates, shell and Tekton substitutions, Kyverno wildcards.
func placeholder(v string) bool {
	return strings.ContainsAny(v, "{}$*?<>%")
}

// tagged parses s and requires an explicit tag or digest, which is what
// separates a reference from words like "info" or "true" outside image fields.
func tagged(s string) bool {
	if placeholder(s) {
		return false
	}
	r, err := imageref.Parse(s)
	return err == nil && (r.Tag != "" || r.Digest != "")
}

// qualified is tagged plus a registry host, for values whose key says
// nothing about images: "knative.dev/eventing" or "host.svc:8080" are not.
func qualified(s string) bool {
	first, _, ok := strings.Cut(s, "/")
	if !ok || !(strings.ContainsAny(first, ".:") || first == "localhost") {
		return false
	}
	return tagged(s)
}

// scalar runs every rule on one scalar, found at w.path.
func (w *walker) scalar(n *yaml.Node, ord int) {
	if w.res.skip || len(w.path) == 0 || !isString(n) {
		return
	}
	v := n.Value
	last := w.path[len(w.path)-1]

	// Image fields: any `image` key, in any document.
	if last.index < 0 && last.key == "image" {
		switch {
		case strings.TrimSpace(v) == "" || placeholder(v) || w.claimed[n]:
		default:
			if _, err := imageref.Parse(v); err != nil {
				w.emitErr(n, ord, 0, v, SourceField, err.(*imageref.InvalidError))
			} else {
				w.emit(n, ord, 0, v, SourceField)
			}
		}
	}

	// Container args and command lists.
	if last.index >= 0 && len(w.path) >= 2 {
		if k := w.path[len(w.path)-2].key; k == "args" || k == "command" {
			w.arg(n, ord, last)
		}
	}

	// Env values.
	if last.key == "value" && len(w.path) >= 3 {
		item, list := w.path[len(w.path)-2], w.path[len(w.path)-3]
		if item.index >= 0 && list.key == "env" {
			w.env(n, ord, scalarValue(lookup(item.seq.Content[item.index], "name")))
		}
	}

	// A ClusterServiceVersion's containerImage annotation.
	if w.res.kind == "ClusterServiceVersion" && len(w.path) == w.res.depth+3 && last.key == "containerImage" &&
		w.path[w.res.depth].key == "metadata" && w.path[w.res.depth+1].key == "annotations" {
		if ref, off := trimmed(v); ref != "" && !placeholder(ref) {
			if _, err := imageref.Parse(ref); err == nil {
				w.emit(n, ord, off, ref, SourceCSV)
			}
		}
	}

	// ConfigMap data.
	if w.res.kind == "ConfigMap" && len(w.path) == w.res.depth+2 && w.path[w.res.depth].key == "data" && last.index < 0 {
		w.configMap(n, ord, last.key)
	}

	for _, r := range w.rules {
		r.match(w, n, ord)
	}
}

func imageFlag(name string) bool {
	name = strings.TrimLeft(name, "-")
	return imageWordRE.MatchString(name) || wellKnownFlags[name]
}

func (w *walker) arg(n *yaml.Node, ord int, at seg) {
	v := n.Value
	if strings.HasPrefix(v, "-") {
		if flag, val, ok := strings.Cut(v, "="); ok && imageFlag(flag) && tagged(val) {
			w.emit(n, ord, len(flag)+1, val, SourceArgs)
		}
		return
	}
	if at.index == 0 || !tagged(v) {
		return
	}
	prev := at.seq.Content[at.index-1]
	if prev.Kind == yaml.ScalarNode && strings.HasPrefix(prev.Value, "-") && !strings.Contains(prev.Value, "=") && imageFlag(prev.Value) {
		w.emit(n, ord, 0, v, SourceArgs)
	}
}

func (w *walker) env(n *yaml.Node, ord int, name string) {
	v := n.Value
	if !imageWordRE.MatchString(name) {
		if ref, off := trimmed(v); qualified(ref) {
			w.emit(n, ord, off, ref, SourceEnv)
		}
		return
	}
	if ref, off := trimmed(v); tagged(ref) {
		w.emit(n, ord, off, ref, SourceEnv)
		return
	}
	// Lists such as strimzi's STRIMZI_KAFKA_IMAGES: one `version=REF` per line.
	start := 0
	for _, line := range strings.SplitAfter(v, "\n") {
		ref, off := trimmed(line)
		if _, after, ok := strings.Cut(ref, "="); ok {
			off += len(ref) - len(after)
			ref = after
		}
		if tagged(ref) {
			w.emit(n, ord, start+off, ref, SourceEnv)
		}
		start += len(line)
	}
}

func (w *walker) configMap(n *yaml.Node, ord int, key string) {
	if strings.HasPrefix(key, "_") {
		// _example blocks document settings; they configure nothing.
		return
	}
	v := n.Value
	if ref, off := trimmed(v); !strings.ContainsAny(ref, " \t\n") {
		if imageWordRE.MatchString(key) && tagged(ref) || qualified(ref) {
			w.emit(n, ord, off, ref, SourceConfigMap)
		}
		return
	}
	taken := w.embeddedSplits(n, ord)
	var versioned func(voff int) bool
	for _, m := range embeddedRE.FindAllStringSubmatchIndex(v, -1) {
		ref := v[m[4]:m[5]]
		if tagged(ref) {
			w.emit(n, ord, m[4], ref, SourceConfigMapEmbedded)
			continue
		}
		// An `image` key takes a reference without a tag, as the image
		// field rule does, unless a tag or version key completes it.
		if v[m[2]:m[3]] != "image" || placeholder(ref) || taken[m[4]] {
			continue
		}
		if _, err := imageref.Parse(ref); err != nil {
			continue
		}
		if versioned == nil {
			versioned = versionedImages(v)
		}
		if !versioned(m[4]) {
			w.emit(n, ord, m[4], ref, SourceConfigMapEmbedded)
		}
	}
}

var versionKeyRE = regexp.MustCompile(`(?i)["']?[A-Za-z_-]*(?:version|tag)["']?[ \t]*:`)

// versionedImages reports, for YAML or JSON text, whether the `image` value
// at byte voff has a key saying version or tag beside it (kserve's
// "image" with "defaultImageVersion"), which completes it at run time.
// Text that does not parse is judged as a whole: any such key counts.
func versionedImages(v string) func(voff int) bool {
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(v), &doc); err != nil {
		any := versionKeyRE.MatchString(v)
		return func(int) bool { return any }
	}
	in := &walker{data: []byte(v), breaks: parserLineStarts([]byte(v))}
	at := map[int]bool{}
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if n.Kind == yaml.MappingNode {
			if img := lookup(n, "image"); img != nil && img.Kind == yaml.ScalarNode {
				for i := 0; i+1 < len(n.Content); i += 2 {
					if k := n.Content[i].Value; k != "image" && versionKeyRE.MatchString(k+":") {
						at[in.locate(img, 0, img.Value)] = true
						break
					}
				}
			}
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(&doc)
	return func(voff int) bool { return at[voff] }
}

// trimmed returns s without surrounding white space and the offset of what remains.
func trimmed(s string) (string, int) {
	t := strings.TrimLeft(s, " \t\r\n")
	off := len(s) - len(t)
	return strings.TrimRight(t, " \t\r\n"), off
}

func (w *walker) emit(n *yaml.Node, ord, voff int, ref, source string) {
	w.emitErr(n, ord, voff, ref, source, nil)
}

func (w *walker) emitErr(n *yaml.Node, ord, voff int, ref, source string, err *imageref.InvalidError) {
	key := [2]int{ord, voff}
	if w.seen[key] {
		return
	}
	w.seen[key] = true
	if err != nil && len(err.Ref) > MaxQuoted {
		// Messages quote the value: not all of a 10 MB one.
		e := *err
		e.Ref = cut(e.Ref) + "…"
		err = &e
	}
	r := Ref{
		Image:  ref,
		File:   w.file,
		Doc:    w.doc,
		Kind:   w.res.kind,
		Name:   w.res.name,
		Path:   w.pathString(),
		Source: source,
		Err:    err,
		Span:   Span{Offset: w.locate(n, voff, ref), Scalar: ord, ValueOffset: voff, Value: n.Value},
	}
	if r.Span.Offset >= 0 {
		r.Line, r.Column = w.position(r.Span.Offset)
		r.Span.Offset += w.base
	} else {
		r.Line, r.Column = w.pline0+n.Line, n.Column
	}
	w.refs = append(w.refs, r)
}

// locate finds the bytes of ref, found at voff in n's value, in the file.
// Reference characters never need escaping, so the reference appears
// verbatim in the scalar's text; the k-th occurrence in the value is the k-th
// occurrence in the text after the node's start. pkg/rewrite re-parses what
// it writes, so a wrong guess (escapes in a double-quoted scalar) is caught.
func (w *walker) locate(n *yaml.Node, voff int, ref string) int {
	k, i := 0, 0
	for {
		j := strings.Index(n.Value[i:], ref)
		if j < 0 || i+j > voff {
			return -1
		}
		if i+j == voff {
			break
		}
		k++
		i += j + len(ref)
	}
	off := w.offsetOf(n.Line, n.Column)
	if off < 0 {
		return -1
	}
	d := w.data
	// Skip an anchor (&a) or tag (!!str) the node's position includes. An
	// anchor's name may end at a character other than a space (&a:b).
	for off < len(d) && (d[off] == '&' || d[off] == '!') {
		anchor := d[off] == '&'
		off++
		for off < len(d) && !isSpace(d[off]) && (!anchor || isAnchorChar(d[off])) {
			off++
		}
		for off < len(d) && isSpace(d[off]) {
			off++
		}
	}
	switch {
	case n.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0:
		// The header line (| or >, maybe a comment) is not content.
		nl := bytes.IndexByte(d[off:], '\n')
		if nl < 0 {
			return -1
		}
		off += nl + 1
	case n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0:
		off++
	}
	for ; ; k-- {
		j := bytes.Index(d[off:], []byte(ref))
		if j < 0 {
			return -1
		}
		if k == 0 {
			return off + j
		}
		off += j + len(ref)
	}
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// isAnchorChar reports the characters the YAML parser allows in an anchor name.
func isAnchorChar(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c == '_' || c == '-'
}

var simpleKeyRE = regexp.MustCompile(`^[A-Za-z0-9_/-]+$`)

// pathString renders w.path as spec.template.spec.containers[name=manager].args[3].
func (w *walker) pathString() string { return pathOf(w.path) }

// pathAt renders the path of key in the mapping at w.path[:depth].
func (w *walker) pathAt(depth int, key string) string {
	return pathOf(append(w.path[:depth:depth], seg{key: key, index: -1}))
}

func pathOf(path []seg) string {
	var b strings.Builder
	for _, s := range path {
		if s.index >= 0 {
			item := s.seq.Content[s.index]
			if name := scalarValue(lookup(item, "name")); name != "" && !strings.ContainsAny(name, "[]") {
				b.WriteString("[name=" + name + "]")
			} else {
				b.WriteString("[" + strconv.Itoa(s.index+s.shown) + "]")
			}
			continue
		}
		if simpleKeyRE.MatchString(s.key) {
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(s.key)
		} else {
			b.WriteString("[" + strconv.Quote(s.key) + "]")
		}
	}
	return b.String()
}

// ForEachScalar calls fn for every scalar node of a document in the order
// Bytes numbers them (Span.Scalar), starting at ord; it returns the next
// ordinal. pkg/rewrite uses it to check what it wrote.
func ForEachScalar(n *yaml.Node, ord int, fn func(ord int, s *yaml.Node)) int {
	switch n.Kind {
	case yaml.ScalarNode:
		fn(ord, n)
		return ord + 1
	case yaml.AliasNode:
		return ord
	}
	for _, c := range n.Content {
		ord = ForEachScalar(c, ord, fn)
	}
	return ord
}
