// Package webhook applies a lock and prefix rules to pods at admission time:
// a mutating endpoint that rewrites image references, a validating endpoint
// that refuses unpinned or unknown images, and the manifests to run both.
package webhook

import (
	"fmt"
	"sort"
	"strings"

	"github.com/ferry-dev/ferry/pkg/imageref"
	"github.com/ferry-dev/ferry/pkg/lock"
)

// DirectPrefix marks a reference that must never be mapped: the prefix is
// stripped and the rest is used as written.
const DirectPrefix = "direct.to/"

// dockerHub is how go-containerregistry names Docker Hub once normalised.
const dockerHub = "index.docker.io"

// Rule sends every repository under From to the same path under To.
type Rule struct {
	// From is a repository prefix starting with a registry host, e.g.
	// "gcr.io/tekton-releases" or "docker.io/library".
	From string `yaml:"from" json:"from"`
	// To is the prefix that replaces From, e.g. "registry.internal/tekton".
	To string `yaml:"to" json:"to"`
}

// ParseRule parses "SRC_PREFIX=DST_PREFIX" as given to --map.
func ParseRule(s string) (Rule, error) {
	from, to, ok := strings.Cut(s, "=")
	if !ok {
		return Rule{}, fmt.Errorf("mapping %q: want SRC_PREFIX=DST_PREFIX", s)
	}
	r := Rule{From: strings.TrimSpace(from), To: strings.TrimSpace(to)}
	if _, err := r.normalize(); err != nil {
		return Rule{}, err
	}
	return r, nil
}

// How says why an image was (or was not) mapped.
type How string

// The ways an image is mapped.
const (
	ByNone   How = ""
	ByLock   How = "lock"
	ByRule   How = "rule"
	ByDirect How = "direct"
)

// Result is what Map decided for one reference.
type Result struct {
	// Image is the reference to use; equal to the input when nothing applies.
	Image string
	How   How
	// Detail names the lock entry or rule that applied.
	Detail string
}

// Changed reports whether the reference must be replaced.
func (r Result) Changed(written string) bool { return r.How != ByNone && r.Image != written }

// Mapping is an immutable view of a lock and prefix rules; build a new one to
// change it, and swap it in atomically.
type Mapping struct {
	// byText maps a reference as written, and its normalised form, to the
	// lock entry; byDigest maps "repo@sha256:..." to it.
	byText   map[string]lock.Image
	byDigest map[string]lock.Image
	// locations holds the normalised locations of the lock, so that a
	// reference already rewritten counts as locked.
	locations map[string]bool
	rules     []normRule
	// lockImages counts the lock entries with a location, for logs.
	lockImages int
}

type normRule struct {
	Rule
	from, to string
}

// NewMapping indexes a lock (nil for none) and prefix rules.
func NewMapping(l *lock.File, rules []Rule) (*Mapping, error) {
	m := &Mapping{byText: map[string]lock.Image{}, byDigest: map[string]lock.Image{}, locations: map[string]bool{}}
	if l != nil {
		// The resolved form comes last and never overrides an entry as written.
		var resolved []lock.Image
		for _, im := range l.Images {
			loc := im.Location()
			if loc == "" {
				continue
			}
			m.lockImages++
			m.byText[im.Image] = im
			r, err := imageref.Parse(im.Image)
			if err != nil {
				return nil, fmt.Errorf("lock entry %q: %w", im.Image, err)
			}
			if _, ok := m.byText[r.Normalized()]; !ok {
				m.byText[r.Normalized()] = im
			}
			digest := im.Digest
			if digest == "" {
				digest = r.Digest
			}
			if digest != "" {
				m.byDigest[r.Repo.Name()+"@"+digest] = im
			}
			if lr, err := imageref.Parse(loc); err == nil {
				m.locations[lr.Normalized()] = true
			}
			if im.Resolved != "" && im.Relocated != "" {
				resolved = append(resolved, im)
			}
		}
		for _, im := range resolved {
			if r, err := imageref.Parse(im.Resolved); err == nil {
				if _, ok := m.byText[r.Normalized()]; !ok {
					m.byText[r.Normalized()] = im
				}
				if _, ok := m.byDigest[r.Repo.Name()+"@"+r.Digest]; !ok {
					m.byDigest[r.Repo.Name()+"@"+r.Digest] = im
				}
			}
		}
	}
	seen := map[string]string{}
	for _, r := range rules {
		n, err := r.normalize()
		if err != nil {
			return nil, err
		}
		if prev, ok := seen[n.from]; ok && prev != n.to {
			return nil, fmt.Errorf("mapping %s=%s: %q is already mapped to %q", r.From, r.To, r.From, prev)
		}
		seen[n.from] = n.to
		m.rules = append(m.rules, n)
	}
	// Longest prefix first, so the first match is the most specific.
	sort.SliceStable(m.rules, func(i, j int) bool { return len(m.rules[i].from) > len(m.rules[j].from) })
	return m, nil
}

// normalize checks a rule and names Docker Hub the way parsed references do.
func (r Rule) normalize() (normRule, error) {
	bad := func(format string, args ...any) (normRule, error) {
		return normRule{}, fmt.Errorf("mapping %s=%s: %s", r.From, r.To, fmt.Sprintf(format, args...))
	}
	from := strings.TrimSuffix(r.From, "/")
	to := strings.TrimSuffix(r.To, "/")
	if from == "" || to == "" {
		return bad("both prefixes must be set, as SRC_PREFIX=DST_PREFIX")
	}
	if strings.Contains(from, "://") || strings.Contains(to, "://") {
		return bad("write prefixes without http:// or https://")
	}
	host, rest, _ := strings.Cut(from, "/")
	if !isHost(host) {
		return bad("%q must start with a registry host, e.g. docker.io/library or gcr.io/project", r.From)
	}
	if isDockerHub(host) {
		host = dockerHub
	}
	from = host
	if rest != "" {
		from += "/" + rest
	}
	// Both prefixes must be valid repository prefixes: check them with a
	// placeholder repository underneath.
	if _, err := imageref.Parse(from + "/x"); err != nil {
		return bad("source prefix: %v", err)
	}
	toHost, _, _ := strings.Cut(to, "/")
	if !isHost(toHost) {
		return bad("%q must start with a registry host, e.g. registry.internal/mirror", r.To)
	}
	if _, err := imageref.Parse(to + "/x"); err != nil {
		return bad("destination prefix: %v", err)
	}
	return normRule{Rule: r, from: from, to: to}, nil
}

func isHost(s string) bool {
	return strings.ContainsAny(s, ".:") || s == "localhost" || strings.HasPrefix(s, "[")
}

func isDockerHub(host string) bool {
	return host == "docker.io" || host == dockerHub || host == "registry-1.docker.io"
}

// Map decides where an image is pulled from: a lock entry matched by the
// reference as written, its normalised form or its digest, else the longest
// matching prefix rule. A reference under DirectPrefix is only unwrapped.
func (m *Mapping) Map(image string) Result {
	if rest, ok := strings.CutPrefix(image, DirectPrefix); ok {
		if rest == "" {
			return Result{Image: image}
		}
		return Result{Image: rest, How: ByDirect, Detail: DirectPrefix}
	}
	if im, ok := m.byText[image]; ok {
		return Result{Image: im.Location(), How: ByLock, Detail: im.Image}
	}
	r, err := imageref.Parse(image)
	if err != nil {
		return Result{Image: image}
	}
	if im, ok := m.byText[r.Normalized()]; ok {
		return Result{Image: im.Location(), How: ByLock, Detail: im.Image}
	}
	if r.Pinned() {
		if im, ok := m.byDigest[r.Repo.Name()+"@"+r.Digest]; ok {
			return Result{Image: im.Location(), How: ByLock, Detail: im.Image}
		}
	}
	if nr, ok := m.rule(r.Repo.Name()); ok {
		out := nr.to + strings.TrimPrefix(r.Repo.Name(), nr.from)
		if r.Tag != "" {
			out += ":" + r.Tag
		}
		if r.Digest != "" {
			out += "@" + r.Digest
		}
		return Result{Image: out, How: ByRule, Detail: nr.From + "=" + nr.To}
	}
	return Result{Image: image}
}

// rule finds the longest rule whose source prefix holds repo, matching whole
// path components only: "gcr.io/foo" holds "gcr.io/foo/bar", not "gcr.io/foobar".
func (m *Mapping) rule(repo string) (normRule, bool) {
	for _, nr := range m.rules {
		if repo == nr.from || strings.HasPrefix(repo, nr.from+"/") {
			return nr, true
		}
	}
	return normRule{}, false
}

// Known reports whether an image is covered: mapped by the lock or a rule, or
// already one of their destinations (as after the mutating webhook ran).
func (m *Mapping) Known(image string) bool {
	if res := m.Map(image); res.How == ByLock || res.How == ByRule {
		return true
	}
	return m.relocated(image)
}

// relocated reports whether an image already is a lock location or under a
// rule's destination prefix.
func (m *Mapping) relocated(image string) bool {
	r, err := imageref.Parse(image)
	if err != nil {
		return false
	}
	if m.locations[r.Normalized()] {
		return true
	}
	repo := r.Repo.Name()
	for _, nr := range m.rules {
		to := nr.to
		if tr, err := imageref.Parse(to + "/x"); err == nil {
			to = strings.TrimSuffix(tr.Repo.Name(), "/x")
		}
		if repo == to || strings.HasPrefix(repo, to+"/") {
			return true
		}
	}
	return false
}

// Written finds the reference a prefix rule turned into image, so that a
// refusal can name the image as the user wrote it: for the rule
// docker.io=hub.mirror.internal, "hub.mirror.internal/library/busybox:latest"
// came from "busybox:latest" (Docker Hub names are given in their short
// form). ok is false when no rule's destination holds image, or when the
// reference found would not map back to image.
func (m *Mapping) Written(image string) (written string, ok bool) {
	r, err := imageref.Parse(image)
	if err != nil {
		return "", false
	}
	repo := r.Repo.Name()
	for _, nr := range m.rules {
		to := nr.to
		if tr, err := imageref.Parse(to + "/x"); err == nil {
			to = strings.TrimSuffix(tr.Repo.Name(), "/x")
		}
		if repo != to && !strings.HasPrefix(repo, to+"/") {
			continue
		}
		src := nr.from + strings.TrimPrefix(repo, to)
		if short, ok := strings.CutPrefix(src, dockerHub+"/"); ok {
			src = strings.TrimPrefix(short, "library/")
		}
		if r.Tag != "" {
			src += ":" + r.Tag
		}
		if r.Digest != "" {
			src += "@" + r.Digest
		}
		if res := m.Map(src); res.How == ByRule && res.Image == image {
			return src, true
		}
	}
	return "", false
}
