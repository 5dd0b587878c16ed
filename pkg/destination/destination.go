// Package destination decides where each source image lands under the
// repository given with --repository: keeping its path (layout path), its
// host and path (layout host), or all in one repository (layout flat). It
// refuses a plan in which two sources would overwrite each other before
// anything is pushed.
package destination

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/ferry-dev/ferry/pkg/imageref"
	"github.com/google/go-containerregistry/pkg/name"
)

// Layout is how source repositories map to target repositories.
type Layout string

// Layouts.
const (
	// LayoutPath keeps the source repository path under the target:
	// gcr.io/tekton-releases/pipeline/controller lands at
	// REG/PATH/tekton-releases/pipeline/controller.
	LayoutPath Layout = "path"
	// LayoutHost keeps the source host as well:
	// REG/PATH/gcr.io/tekton-releases/pipeline/controller.
	LayoutHost Layout = "host"
	// LayoutFlat puts every image into REG/PATH itself, tagged by digest.
	LayoutFlat Layout = "flat"
)

// Layouts lists the valid layouts, for help and error messages.
var Layouts = []Layout{LayoutPath, LayoutHost, LayoutFlat}

// ParseLayout checks a --layout value; "" means LayoutPath.
func ParseLayout(s string) (Layout, error) {
	switch l := Layout(strings.ToLower(strings.TrimSpace(s))); l {
	case "":
		return LayoutPath, nil
	case LayoutPath, LayoutHost, LayoutFlat:
		return l, nil
	}
	return "", fmt.Errorf("unknown layout %q: want path, host or flat", s)
}

// Image is one image to place.
type Image struct {
	// Written is the reference as written in the manifests; the plan is
	// keyed by it, and its tag is the one pushed.
	Written string
	// Source is where the image comes from: the lock's resolved reference
	// when there is one, else the parsed Written.
	Source imageref.Ref
	// Digest is "sha256:…" of the image's manifest or index.
	Digest string
}

// Target is where one image lands.
type Target struct {
	// Repo is the target repository.
	Repo name.Repository
	// Tag is pushed along with the digest; "" for none.
	Tag string
}

// Reference is the target pinned by digest, as rewritten manifests use it.
func (t Target) Reference(digest string) string { return t.Repo.Name() + "@" + digest }

// CollisionError says two different sources would land in the same place.
type CollisionError struct {
	// Target is the repository (or repository:tag) both would land at.
	Target string
	// Sources are the colliding source references.
	Sources []string
	// Layout is the layout that made them collide.
	Layout Layout
	// Tag is set when the repository is shared on purpose but one tag
	// would point at two digests.
	Tag string
}

func (e *CollisionError) Error() string {
	if e.Tag != "" {
		return fmt.Sprintf("%s would point at two different images: %s; resolve them to the same digest or drop one of the references",
			e.Target, strings.Join(e.Sources, " and "))
	}
	hint := "use --layout host to keep the source registry in the path"
	if e.Layout == LayoutHost {
		hint = "rename one of the sources"
	}
	return fmt.Sprintf("%s and %s would both land in %s (layout %s): %s",
		e.Sources[0], strings.Join(e.Sources[1:], " and "), e.Target, e.Layout, hint)
}

// InvalidError is a --repository value or a target that is no valid
// repository name.
type InvalidError struct {
	Value  string
	Reason string
}

func (e *InvalidError) Error() string {
	return fmt.Sprintf("%q is not a valid target repository: %s", e.Value, e.Reason)
}

// pathRE is the distribution spec's repository path grammar.
var pathRE = regexp.MustCompile(`^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$`)

// Base is a parsed --repository value: a registry host and an optional
// path below it.
type Base struct {
	Registry name.Registry
	// Path is "" when images go right under the registry.
	Path string
}

// ParseRepository checks a --repository value: REG or REG/PATH, lowercase,
// without scheme, tag or digest. A value without a host ("mirror") means
// Docker Hub, as it does for docker push.
func ParseRepository(s string) (Base, error) {
	bad := func(reason string) (Base, error) { return Base{}, &InvalidError{Value: s, Reason: reason} }
	switch {
	case s == "":
		return bad("it is empty")
	case strings.Contains(s, "://"):
		return bad("write it without a scheme, e.g. registry.internal/mirror")
	case strings.Contains(s, "@"):
		return bad("it names a digest; give a repository")
	case strings.ContainsAny(s, " \t\r\n"):
		return bad("it contains white space")
	}
	s = strings.TrimSuffix(s, "/")
	host, path := s, ""
	if first, rest, ok := strings.Cut(s, "/"); ok {
		host, path = first, rest
	}
	if !strings.ContainsAny(host, ".:") && host != "localhost" && !strings.HasPrefix(host, "[") {
		// No host: Docker Hub, as "mirror/app" means docker.io/mirror/app.
		host, path = name.DefaultRegistry, s
	}
	if i := strings.LastIndex(path, ":"); i >= 0 {
		return bad(fmt.Sprintf("it has a tag %q; give a repository, tags are kept from the sources", path[i+1:]))
	}
	if path != "" && strings.ToLower(path) != path {
		return bad("repository paths must be lowercase")
	}
	if path != "" && !pathRE.MatchString(path) {
		return bad("the path may hold only lowercase letters, digits and separators ('.', '_', '-', '/') between them")
	}
	reg, err := name.NewRegistry(host)
	if err != nil {
		return bad(err.Error())
	}
	return Base{Registry: reg, Path: path}, nil
}

// String is the base as REG[/PATH].
func (b Base) String() string {
	if b.Path == "" {
		return b.Registry.Name()
	}
	return b.Registry.Name() + "/" + b.Path
}

// Plan maps every image, by reference as written, to its target. It fails
// with a *CollisionError when two different source repositories would land
// in the same target repository, or one tag would point at two digests,
// and with an *InvalidError when a target is no valid repository name.
func Plan(images []Image, repository string, layout Layout) (map[string]Target, error) {
	base, err := ParseRepository(repository)
	if err != nil {
		return nil, err
	}
	if layout == "" {
		layout = LayoutPath
	}
	if layout == LayoutFlat && base.Path == "" {
		return nil, &InvalidError{Value: repository, Reason: "layout flat needs a repository path, e.g. " + base.Registry.Name() + "/mirror"}
	}

	plan := make(map[string]Target, len(images))
	// Which source repository landed in each target, and what each
	// target tag points at, to find collisions.
	from := map[string]string{}
	tagged := map[string]struct{ digest, written string }{}
	// Sorted, so that the error names the same pair on every run.
	sorted := append([]Image(nil), images...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Written < sorted[j].Written })
	for _, im := range sorted {
		src := im.Source.Repo
		var path, tag string
		switch layout {
		case LayoutPath:
			path = join(base.Path, src.RepositoryStr())
			tag = writtenTag(im)
		case LayoutHost:
			path = join(base.Path, hostComponent(src.RegistryStr()), src.RepositoryStr())
			tag = writtenTag(im)
		case LayoutFlat:
			path = base.Path
			tag = FlatTag(im.Digest)
		default:
			return nil, fmt.Errorf("unknown layout %q: want path, host or flat", layout)
		}
		target := base.Registry.Name() + "/" + path
		if len(target) > 255 {
			return nil, &InvalidError{Value: target, Reason: fmt.Sprintf("for %s it is %d characters long, more than 255; use a shorter --repository or --layout flat", im.Written, len(target))}
		}
		repo, err := name.NewRepository(target)
		if err != nil || !pathRE.MatchString(path) {
			return nil, &InvalidError{Value: target, Reason: fmt.Sprintf("it is where %s would land", im.Written)}
		}
		if layout != LayoutFlat {
			if prev, ok := from[repo.Name()]; ok && prev != src.Name() {
				return nil, &CollisionError{Target: repo.Name(), Sources: []string{display(prev), display(src.Name())}, Layout: layout}
			}
			from[repo.Name()] = src.Name()
		}
		if tag != "" {
			key := repo.Name() + ":" + tag
			if prev, ok := tagged[key]; ok && prev.digest != im.Digest && im.Digest != "" && prev.digest != "" {
				return nil, &CollisionError{Target: key, Sources: []string{prev.written + " (" + prev.digest + ")", im.Written + " (" + im.Digest + ")"}, Layout: layout, Tag: tag}
			}
			tagged[key] = struct{ digest, written string }{im.Digest, im.Written}
		}
		plan[im.Written] = Target{Repo: repo, Tag: tag}
	}
	return plan, nil
}

// FlatTag is the tag an image gets in the flat layout, where the source
// tags of many repositories cannot share one repository: derived from the
// digest, so it never collides and keeps the manifest from being collected
// as untagged. It avoids the bare "sha256-<hex>" form, which the OCI
// referrers fallback uses. "" when the digest is unknown.
func FlatTag(digest string) string {
	if digest == "" {
		return ""
	}
	return "ferry-" + strings.Replace(digest, ":", "-", 1)
}

// writtenTag is the tag as written, "latest" for a bare name, and none
// for a reference pinned by digest alone.
func writtenTag(im Image) string {
	if r, err := imageref.Parse(im.Written); err == nil {
		return r.TagOrLatest()
	}
	return im.Source.TagOrLatest()
}

// hostComponent turns a registry host into a path component: Docker Hub
// shows as docker.io, and a port's ':' (not allowed in a path) becomes '-'.
func hostComponent(host string) string {
	if host == name.DefaultRegistry {
		host = "docker.io"
	}
	host = strings.ToLower(host)
	var b strings.Builder
	for _, r := range host {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '.', r == '-':
			b.WriteRune(r)
		default:
			b.WriteRune('-')
		}
	}
	return strings.Trim(b.String(), ".-")
}

// display shows Docker Hub repositories the way users write them.
func display(repo string) string {
	return strings.Replace(repo, name.DefaultRegistry+"/", "docker.io/", 1)
}

func join(parts ...string) string {
	var out []string
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, "/")
}
