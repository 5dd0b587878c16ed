package scan

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/ferry-dev/ferry/pkg/imageref"
	"sigs.k8s.io/kustomize/kyaml/yaml"
)

// ConfigAPIVersion and ConfigKind identify a ferry config file.
const (
	ConfigAPIVersion = "ferry.dev/v1alpha1"
	ConfigKind       = "Config"
)

// Config is a ferry config file (--config): search rules that find image
// references the built-in rules miss.
type Config struct {
	APIVersion  string `yaml:"apiVersion"`
	Kind        string `yaml:"kind"`
	SearchRules []Rule `yaml:"searchRules"`
}

// Rule finds references in string values. A value is selected by Path, by
// KeyPattern, or by both (KeyPattern then applies under Path); Kinds narrows
// the documents. The reference is the whole value, or ValuePattern's first
// capture group (every match counts). What is selected must parse as an image
// reference; templates and wildcards never do.
type Rule struct {
	// Name is reported as the Source of what the rule finds.
	Name string `yaml:"name"`
	// Kinds, when set, limits the rule to documents of these kinds.
	Kinds []string `yaml:"kinds,omitempty"`
	// Path is a field path from the document root, e.g.
	// spec.template.spec.containers[*].args: fields separated by dots,
	// [*] any item, [2] one item, [name=manager] the item whose name is manager.
	// A path ending at a list selects its items.
	Path string `yaml:"path,omitempty"`
	// KeyPattern is a regular expression a mapping key must match, e.g. "_IMAGE$";
	// values of a list under a matching key are selected too.
	KeyPattern string `yaml:"keyPattern,omitempty"`
	// ValuePattern is a regular expression applied to each selected value,
	// e.g. "^--sidecar=(.+)$": the reference is its capture group, or the
	// whole match when it has none.
	ValuePattern string `yaml:"valuePattern,omitempty"`
	// Parts, with Path, finds a reference written in parts in the mapping
	// at Path: each names the key (or a dotted path below the mapping)
	// holding one part. The reference is REGISTRY/REPOSITORY:TAG@DIGEST.
	Parts *RuleParts `yaml:"parts,omitempty"`

	parts []rulePart
	path  []pathElem
	key   *regexp.Regexp
	value *regexp.Regexp
	kinds map[string]bool
}

// RuleParts names where each part of a split reference is, relative to
// the rule's Path. Repository (or Name) is required, with a Tag (or
// Version) or a Digest.
type RuleParts struct {
	Registry   string `yaml:"registry,omitempty"`
	Repository string `yaml:"repository,omitempty"`
	Name       string `yaml:"name,omitempty"`
	Tag        string `yaml:"tag,omitempty"`
	Version    string `yaml:"version,omitempty"`
	Digest     string `yaml:"digest,omitempty"`
}

type rulePart struct {
	role string
	keys []string
}

func (p *RuleParts) compile() ([]rulePart, error) {
	repo, tag := p.Repository, p.Tag
	switch {
	case p.Repository != "" && p.Name != "":
		return nil, errors.New("parts: set repository or name, not both")
	case p.Tag != "" && p.Version != "":
		return nil, errors.New("parts: set tag or version, not both")
	case p.Name != "":
		repo = p.Name
	}
	if p.Version != "" {
		tag = p.Version
	}
	if repo == "" || tag == "" && p.Digest == "" {
		return nil, errors.New("parts: name the key of the repository (or name), and of the tag (or version) or digest")
	}
	var out []rulePart
	for _, x := range []struct{ role, key string }{{RoleRegistry, p.Registry}, {RoleRepository, repo}, {RoleTag, tag}, {RoleDigest, p.Digest}} {
		if x.key == "" {
			continue
		}
		keys := strings.Split(x.key, ".")
		for _, k := range keys {
			if k == "" {
				return nil, fmt.Errorf("parts: %s %q: want a key or dotted keys, e.g. image.tag", x.role, x.key)
			}
		}
		out = append(out, rulePart{role: x.role, keys: keys})
	}
	return out, nil
}

// matchParts runs a user parts rule on the mapping m at w.path.
func (r *Rule) matchParts(w *walker, m *yaml.Node) {
	if r.kinds != nil && !r.kinds[w.res.kind] {
		return
	}
	rel := w.path[w.res.depth:]
	if len(rel) != len(r.path) || !matchPath(r.path, rel) {
		return
	}
	var parts []splitPart
	for _, p := range r.parts {
		n := m
		for _, k := range p.keys {
			n = lookup(n, k)
		}
		ok := n != nil && n.Kind == yaml.ScalarNode && n.ShortTag() != "!!null" && !placeholder(n.Value) &&
			(strings.TrimSpace(n.Value) != "" || p.role == RoleDigest && isString(n))
		if !ok {
			if p.role == RoleRepository {
				return
			}
			continue
		}
		parts = append(parts, splitPart{role: p.role, node: n, path: w.pathString() + "." + strings.Join(p.keys, ".")})
	}
	w.emitSplit(parts, SourceSplit)
}

type pathElem struct {
	field    string // a mapping key, when not an item
	item     bool
	any      bool   // [*]
	index    int    // [N], -1 when not an index
	selKey   string // [key=value]
	selValue string
}

// LoadConfig reads and validates a config file; errors name the file and the
// rule at fault.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, readErr(path, err)
	}
	c, err := ParseConfig(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// ParseConfig decodes and validates a config file's content.
func ParseConfig(b []byte) (*Config, error) {
	c := &Config{}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			msgs := make([]string, len(te.Errors))
			for i, m := range te.Errors {
				msgs[i] = unknownFieldRE.ReplaceAllString(m, `unknown field "$1"`)
			}
			return nil, errors.New(strings.Join(msgs, "; "))
		}
		var se *SyntaxError
		if e := syntaxErr("", err); errors.As(e, &se) && (se.Line > 0 || parserErrors[se.Msg]) {
			// At the line an editor shows, as for manifests.
			w := &walker{data: b, lines: lineStarts(b), breaks: parserLineStarts(b)}
			if errors.As(w.syntaxErr(err), &se) {
				return nil, fmt.Errorf("line %d: %s", se.Line, se.Msg)
			}
		}
		return nil, fmt.Errorf("invalid config: %s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if c.APIVersion != ConfigAPIVersion || c.Kind != ConfigKind {
		return nil, fmt.Errorf("not a ferry config: want apiVersion %s and kind %s, found %q and %q", ConfigAPIVersion, ConfigKind, c.APIVersion, c.Kind)
	}
	if _, err := c.compile(); err != nil {
		return nil, err
	}
	return c, nil
}

// compile validates the rules and prepares their patterns; a nil config has none.
func (c *Config) compile() ([]*Rule, error) {
	if c == nil {
		return nil, nil
	}
	names := map[string]bool{}
	for _, b := range builtinNames {
		names[b] = true
	}
	out := make([]*Rule, 0, len(c.SearchRules))
	for i := range c.SearchRules {
		r := &c.SearchRules[i]
		where := fmt.Sprintf("searchRules[%d]", i)
		if r.Name != "" {
			where += fmt.Sprintf(" (%s)", r.Name)
		}
		if err := r.compile(); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		if names[r.Name] {
			return nil, fmt.Errorf("%s: name %q is already used; rule names must be unique and differ from the built-in %s", where, r.Name, strings.Join(builtinNames, ", "))
		}
		names[r.Name] = true
		out = append(out, r)
	}
	return out, nil
}

func (r *Rule) compile() error {
	if r.Name == "" {
		return errors.New("name is required")
	}
	var err error
	if r.Parts != nil {
		if r.Path == "" || r.KeyPattern != "" || r.ValuePattern != "" {
			return errors.New("parts: set path to the mapping holding the parts, and no keyPattern or valuePattern")
		}
		if r.parts, err = r.Parts.compile(); err != nil {
			return err
		}
	}
	if r.Path == "" && r.KeyPattern == "" {
		return errors.New("set path, keyPattern or both to say which values to look at")
	}
	if r.path, err = parsePath(r.Path); err != nil {
		return fmt.Errorf("path %q: %w", r.Path, err)
	}
	if r.KeyPattern != "" {
		if r.key, err = regexp.Compile(r.KeyPattern); err != nil {
			return fmt.Errorf("keyPattern: %w", err)
		}
	}
	if r.ValuePattern != "" {
		if r.value, err = regexp.Compile(r.ValuePattern); err != nil {
			return fmt.Errorf("valuePattern: %w", err)
		}
		if r.value.NumSubexp() > 1 {
			return fmt.Errorf("valuePattern %q has %d capture groups; use one, around the reference, and (?:...) for the others", r.ValuePattern, r.value.NumSubexp())
		}
	}
	r.kinds = nil
	if len(r.Kinds) > 0 {
		r.kinds = map[string]bool{}
		for _, k := range r.Kinds {
			r.kinds[k] = true
		}
	}
	return nil
}

var (
	unknownFieldRE = regexp.MustCompile(`field (\S+) not found in type \S+`)
	fieldRE        = regexp.MustCompile(`^[^.\[\]]+`)
	itemRE         = regexp.MustCompile(`^\[(\*|[0-9]+|[^=\]]+=[^\]]*)\]`)
)

func parsePath(s string) ([]pathElem, error) {
	var out []pathElem
	rest := s
	for rest != "" {
		if strings.HasPrefix(rest, "[") {
			m := itemRE.FindStringSubmatch(rest)
			if m == nil {
				return nil, fmt.Errorf("bad item selector at %q: want [*], [N] or [key=value]", rest)
			}
			e := pathElem{item: true, index: -1}
			switch {
			case m[1] == "*":
				e.any = true
			case strings.Contains(m[1], "="):
				e.selKey, e.selValue, _ = strings.Cut(m[1], "=")
			default:
				e.index, _ = strconv.Atoi(m[1])
			}
			out = append(out, e)
			rest = rest[len(m[0]):]
			continue
		}
		if len(out) > 0 {
			if !strings.HasPrefix(rest, ".") {
				return nil, fmt.Errorf("want '.' or '[' at %q", rest)
			}
			rest = rest[1:]
		}
		f := fieldRE.FindString(rest)
		if f == "" {
			return nil, fmt.Errorf("empty field name at %q", rest)
		}
		out = append(out, pathElem{field: f, index: -1})
		rest = rest[len(f):]
	}
	return out, nil
}

// matchPath reports whether the rule path p matches the start of path.
func matchPath(p []pathElem, path []seg) bool {
	if len(p) > len(path) {
		return false
	}
	for i, e := range p {
		s := path[i]
		if !e.item {
			if s.index >= 0 || s.key != e.field {
				return false
			}
			continue
		}
		if s.index < 0 {
			return false
		}
		switch {
		case e.any:
		case e.selKey != "":
			if scalarValue(lookup(s.seq.Content[s.index], e.selKey)) != e.selValue {
				return false
			}
		case e.index != s.index:
			return false
		}
	}
	return true
}

// match runs a user rule on the scalar n at w.path.
func (r *Rule) match(w *walker, n *yaml.Node, ord int) {
	if r.parts != nil {
		return
	}
	if r.kinds != nil && !r.kinds[w.res.kind] {
		return
	}
	rel := w.path[w.res.depth:]
	if len(rel) == 0 {
		// A List item that is a scalar, not an object: no key holds it.
		return
	}
	last := rel[len(rel)-1]
	// The key that holds the value: its own, or its list's for an item.
	keyAt := len(rel) - 1
	if last.index >= 0 {
		keyAt--
	}
	if keyAt < 0 || rel[keyAt].index >= 0 {
		return
	}
	if r.path != nil {
		if !matchPath(r.path, rel) {
			return
		}
		if r.key == nil && len(r.path) != len(rel) && len(r.path) != keyAt+1 {
			return
		}
	}
	if r.key != nil && !r.key.MatchString(rel[keyAt].key) {
		return
	}
	v := n.Value
	if r.value == nil {
		if ref, off := trimmed(v); ref != "" && !placeholder(ref) {
			if _, err := imageref.Parse(ref); err == nil {
				w.emit(n, ord, off, ref, r.Name)
			}
		}
		return
	}
	for _, m := range r.value.FindAllStringSubmatchIndex(v, -1) {
		lo, hi := m[0], m[1]
		if len(m) > 2 {
			lo, hi = m[2], m[3]
		}
		if lo < 0 || lo == hi {
			continue
		}
		if ref := v[lo:hi]; !placeholder(ref) {
			if _, err := imageref.Parse(ref); err == nil {
				w.emit(n, ord, lo, ref, r.Name)
			}
		}
	}
}
