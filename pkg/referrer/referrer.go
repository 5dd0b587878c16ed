// Package referrer finds the supply-chain artifacts attached to an image in
// its repository: cosign's signatures, attestations and SBOMs under the tags
// sha256-<hex>.sig, .att and .sbom, and OCI 1.1 referrers, through the
// referrers API where the registry has one, else through the referrers tag
// schema (an index tagged sha256-<hex>). Artifacts of artifacts are found
// too (a signature of an attestation), to a bounded depth.
package referrer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/ferry-dev/ferry/pkg/graph"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/errgroup"
)

// Kinds of artifact.
const (
	KindSignature   = "signature"   // cosign's sha256-<hex>.sig
	KindAttestation = "attestation" // cosign's sha256-<hex>.att
	KindSBOM        = "sbom"        // cosign's sha256-<hex>.sbom
	KindReferrer    = "referrer"    // an OCI 1.1 manifest whose subject is the image
)

// cosignSuffixes maps cosign's tag suffixes to kinds, in the order shown.
var cosignSuffixes = []struct{ suffix, kind string }{
	{".sig", KindSignature},
	{".att", KindAttestation},
	{".sbom", KindSBOM},
}

// Artifact is one manifest attached to a subject.
type Artifact struct {
	// Subject is the digest of the manifest the artifact is attached to.
	Subject v1.Hash
	// Kind says how it was found: one of the Kind constants.
	Kind string
	// Tag is the tag it had (cosign's scheme); "" for a referrer.
	Tag string
	// Desc describes the artifact's manifest; ArtifactType is set for a
	// referrer that declares one.
	Desc v1.Descriptor
	// Node is the artifact's manifest graph, walked.
	Node *graph.Node
}

// Source is one repository of a registry.
type Source interface {
	graph.Fetcher
	// Tags lists the repository's tags.
	Tags(ctx context.Context) ([]string, error)
	// Tagged fetches the manifest a tag names, with its descriptor.
	Tagged(ctx context.Context, tag string) (v1.Descriptor, []byte, error)
	// Referrers returns the referrers API's answer for subject, one
	// image index per page, or an error wrapping NoAPI when the registry
	// has none.
	Referrers(ctx context.Context, subject v1.Hash) ([][]byte, error)
	// Repository names the repository, for messages.
	Repository() name.Repository
}

// Options tune Find.
type Options struct {
	// NoAPI is the error (checked with errors.Is) that Source.Referrers
	// wraps when the registry has no referrers API.
	NoAPI error
	// NoList is the error (checked with errors.Is) that Source.Tags wraps
	// when the registry will not list tags; each tag is then asked for
	// one by one, and ErrNoTag (see NoTag) means it is absent.
	NoList error
	// NoTag is the error Source.Tagged wraps for an absent tag.
	NoTag error
	// MaxDepth bounds how many levels of artifacts of artifacts are
	// followed; 0 means DefaultMaxDepth.
	MaxDepth int
	// Jobs bounds concurrent lookups; 0 means 4.
	Jobs int
	// Filter picks the artifacts found by kind or artifactType; the
	// artifacts of an artifact left out are not looked for. The zero
	// Filter keeps all.
	Filter Filter
	// Registry is what the registry has shown of itself, shared by the
	// finders of all its repositories, so that a registry without the
	// referrers API is asked once per run, not once per repository; nil
	// keeps it to this finder.
	Registry *Registry
}

// Registry records whether a registry has the referrers API. The
// distribution spec forbids a registry with the API to answer 404, so one
// answer speaks for every repository. Its zero value is ready to use.
type Registry struct {
	mu       sync.Mutex
	noAPI    bool
	apiKnown bool
	// probe lets one lookup at a time ask until apiKnown.
	probe sync.Mutex
}

// DefaultMaxDepth covers a signature of an attestation of an image and one
// level more.
const DefaultMaxDepth = 3

// ErrSubjectMismatch is returned for a referrer whose manifest names
// another subject than the one it was listed for.
var ErrSubjectMismatch = errors.New("referrer names another subject")

// ErrMalformed is returned for a referrers answer that is no image index.
var ErrMalformed = errors.New("malformed referrers answer")

// Finder finds artifacts in one repository. It lists the tags once and
// stops asking for the referrers API once the registry has shown it has
// none. Its methods may be called concurrently.
type Finder struct {
	src Source
	o   Options

	tagsOnce sync.Once
	tags     map[string]bool
	tagsErr  error

	reg *Registry
}

// New returns a Finder for src.
func New(src Source, o Options) *Finder {
	if o.MaxDepth <= 0 {
		o.MaxDepth = DefaultMaxDepth
	}
	if o.Jobs <= 0 {
		o.Jobs = 4
	}
	reg := o.Registry
	if reg == nil {
		reg = &Registry{}
	}
	return &Finder{src: src, o: o, reg: reg}
}

// TagFor is the tag cosign gives an artifact of subject, suffix being
// ".sig", ".att" or ".sbom"; "" gives the referrers tag schema's tag.
func TagFor(subject v1.Hash, suffix string) string {
	return subject.Algorithm + "-" + subject.Hex + suffix
}

// Find returns every artifact attached to the subjects, and recursively to
// those artifacts, each (subject, artifact) pair once, ordered by subject,
// kind and tag or digest so that the same registry content gives the same
// list.
func (f *Finder) Find(ctx context.Context, subjects ...v1.Hash) ([]Artifact, error) {
	seen := map[v1.Hash]bool{}
	for _, s := range subjects {
		seen[s] = true
	}
	var all []Artifact
	level := slices.Clone(subjects)
	for depth := 0; len(level) > 0 && depth < f.o.MaxDepth; depth++ {
		found := make([][]Artifact, len(level))
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(f.o.Jobs)
		for i, s := range level {
			g.Go(func() error {
				a, err := f.direct(gctx, s)
				found[i] = a
				return err
			})
		}
		if err := g.Wait(); err != nil {
			return nil, err
		}
		level = nil
		for _, as := range found {
			for _, a := range as {
				all = append(all, a)
				// An artifact reached twice, or one that is its own
				// ancestor, is looked up once: cycles end here.
				if !seen[a.Desc.Digest] {
					seen[a.Desc.Digest] = true
					level = append(level, a.Desc.Digest)
				}
			}
		}
	}
	slices.SortStableFunc(all, func(a, b Artifact) int {
		return strings.Compare(a.Subject.String()+a.Kind+a.Tag+a.Desc.Digest.String(), b.Subject.String()+b.Kind+b.Tag+b.Desc.Digest.String())
	})
	return slices.CompactFunc(all, func(a, b Artifact) bool {
		return a.Subject == b.Subject && a.Desc.Digest == b.Desc.Digest && a.Tag == b.Tag
	}), nil
}

// direct finds the artifacts attached to s itself.
func (f *Finder) direct(ctx context.Context, s v1.Hash) ([]Artifact, error) {
	tags, err := f.tagSet(ctx)
	if err != nil {
		return nil, err
	}
	var out []Artifact
	for _, c := range cosignSuffixes {
		tag := TagFor(s, c.suffix)
		if tags != nil && !tags[tag] || f.o.Filter.kindOnly() && !f.o.Filter.Keep(c.kind, "") {
			continue
		}
		d, raw, err := f.src.Tagged(ctx, tag)
		if tags == nil && f.o.NoTag != nil && errors.Is(err, f.o.NoTag) {
			continue
		}
		if err != nil {
			return nil, err
		}
		n, err := f.walk(ctx, d, raw)
		if err != nil {
			return nil, fmt.Errorf("%s:%s: %w", f.src.Repository(), tag, err)
		}
		if err := checkSubject(n.Raw, s, true); err != nil {
			return nil, fmt.Errorf("%s:%s: %w", f.src.Repository(), tag, err)
		}
		d.ArtifactType = artifactType(n.Raw)
		if !f.o.Filter.Keep(c.kind, d.ArtifactType) {
			continue
		}
		out = append(out, Artifact{Subject: s, Kind: c.kind, Tag: tag, Desc: d, Node: n})
	}
	if f.o.Filter.kindOnly() && !f.o.Filter.Keep(KindReferrer, "") {
		return out, nil
	}
	refs, err := f.referrers(ctx, s, tags)
	if err != nil {
		return nil, err
	}
	for _, d := range refs {
		n, err := f.walk(ctx, d, nil)
		if err != nil {
			return nil, fmt.Errorf("referrer %s of %s@%s: %w", d.Digest, f.src.Repository(), s, err)
		}
		if err := checkSubject(n.Raw, s, false); err != nil {
			return nil, fmt.Errorf("referrer %s listed for %s@%s: %w", d.Digest, f.src.Repository(), s, err)
		}
		d.Annotations = nil
		// The manifest's own word: some registries report the config's
		// media type even where the manifest declares an artifactType.
		if at := artifactType(n.Raw); at != "" {
			d.ArtifactType = at
		}
		if !f.o.Filter.Keep(KindReferrer, d.ArtifactType) {
			continue
		}
		out = append(out, Artifact{Subject: s, Kind: KindReferrer, Desc: d, Node: n})
	}
	return out, nil
}

// referrers lists s's referrers: from the API, else from the tag schema.
func (f *Finder) referrers(ctx context.Context, s v1.Hash, tags map[string]bool) ([]v1.Descriptor, error) {
	// Until the registry has answered once, one lookup asks at a time: a
	// registry without the API is then asked once, not once per manifest
	// looked up meanwhile.
	f.reg.mu.Lock()
	known := f.reg.apiKnown
	f.reg.mu.Unlock()
	if !known {
		f.reg.probe.Lock()
		defer f.reg.probe.Unlock()
	}
	f.reg.mu.Lock()
	noAPI := f.reg.noAPI
	f.reg.mu.Unlock()
	if !noAPI {
		pages, err := f.src.Referrers(ctx, s)
		switch {
		case err == nil:
			f.reg.mu.Lock()
			f.reg.apiKnown = true
			f.reg.mu.Unlock()
			var out []v1.Descriptor
			for i, raw := range pages {
				what := fmt.Sprintf("%s answered the referrers API for %s@%s", f.src.Repository().RegistryStr(), f.src.Repository().RepositoryStr(), s)
				if len(pages) > 1 {
					what = fmt.Sprintf("%s answered the referrers API for %s@%s (page %d)", f.src.Repository().RegistryStr(), f.src.Repository().RepositoryStr(), s, i+1)
				}
				ds, err := parseIndex(raw, what)
				if err != nil {
					return nil, err
				}
				// A registry whose list changed between pages may
				// repeat an entry: each is walked once.
				for _, d := range ds {
					if !slices.ContainsFunc(out, func(o v1.Descriptor) bool { return o.Digest == d.Digest }) {
						out = append(out, d)
					}
				}
			}
			return out, nil
		case f.o.NoAPI != nil && errors.Is(err, f.o.NoAPI):
			f.reg.mu.Lock()
			f.reg.noAPI, f.reg.apiKnown = true, true
			f.reg.mu.Unlock()
		default:
			return nil, err
		}
	}
	tag := TagFor(s, "")
	if tags != nil && !tags[tag] {
		return nil, nil
	}
	_, raw, err := f.src.Tagged(ctx, tag)
	if tags == nil && f.o.NoTag != nil && errors.Is(err, f.o.NoTag) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return parseIndex(raw, fmt.Sprintf("%s holds at %s:%s (the referrers tag schema)", f.src.Repository().RegistryStr(), f.src.Repository().RepositoryStr(), tag))
}

// parseIndex reads a referrers index; what says where it came from.
func parseIndex(raw []byte, what string) ([]v1.Descriptor, error) {
	var idx struct {
		SchemaVersion int              `json:"schemaVersion"`
		MediaType     types.MediaType  `json:"mediaType"`
		Manifests     *[]v1.Descriptor `json:"manifests"`
	}
	if err := json.Unmarshal(raw, &idx); err != nil {
		return nil, fmt.Errorf("%s something that is not JSON: %w: %w", what, ErrMalformed, err)
	}
	if idx.Manifests == nil || (idx.MediaType != "" && !idx.MediaType.IsIndex()) {
		return nil, fmt.Errorf("%s something that is not an image index (mediaType %q): %w", what, idx.MediaType, ErrMalformed)
	}
	var out []v1.Descriptor
	for _, d := range *idx.Manifests {
		if d.Digest.Algorithm == "" || d.Size <= 0 || d.Size > graph.MaxManifestSize {
			return nil, fmt.Errorf("%s an entry with digest %q and size %d: %w", what, d.Digest, d.Size, ErrMalformed)
		}
		out = append(out, d)
	}
	return out, nil
}

// walk walks an artifact's graph; raw, when known, is not fetched again.
func (f *Finder) walk(ctx context.Context, d v1.Descriptor, raw []byte) (*graph.Node, error) {
	var fetch graph.Fetcher = f.src
	if raw != nil {
		fetch = seeded{Fetcher: f.src, d: d.Digest, raw: raw}
	}
	return graph.Walk(ctx, fetch, d, graph.Options{})
}

// seeded serves one manifest already fetched.
type seeded struct {
	graph.Fetcher
	d   v1.Hash
	raw []byte
}

func (s seeded) Manifest(ctx context.Context, d v1.Descriptor) ([]byte, error) {
	if d.Digest == s.d {
		return s.raw, nil
	}
	return s.Fetcher.Manifest(ctx, d)
}

// checkSubject refuses an artifact whose subject field names another
// manifest than want. A referrer must have one; cosign's tagged artifacts
// usually have none.
func checkSubject(raw []byte, want v1.Hash, optional bool) error {
	var m struct {
		Subject *v1.Descriptor `json:"subject"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return fmt.Errorf("manifest is not valid JSON: %w", err)
	}
	switch {
	case m.Subject == nil && optional:
		return nil
	case m.Subject == nil:
		return fmt.Errorf("%w: it has no subject, want %s", ErrSubjectMismatch, want)
	case m.Subject.Digest != want:
		return fmt.Errorf("%w: its subject is %s, want %s", ErrSubjectMismatch, m.Subject.Digest, want)
	}
	return nil
}

// artifactType reads a manifest's artifactType, else its config's media
// type, as the referrers API reports it.
func artifactType(raw []byte) string {
	var m struct {
		ArtifactType string `json:"artifactType"`
		Config       *struct {
			MediaType string `json:"mediaType"`
		} `json:"config"`
	}
	if json.Unmarshal(raw, &m) != nil {
		return ""
	}
	if m.ArtifactType != "" {
		return m.ArtifactType
	}
	if m.Config != nil && m.Config.MediaType != string(types.OCIConfigJSON) {
		return m.Config.MediaType
	}
	return ""
}

// tagSet lists the repository's tags once; nil (and no error) when the
// registry will not list them, and each tag is asked for by name.
func (f *Finder) tagSet(ctx context.Context) (map[string]bool, error) {
	f.tagsOnce.Do(func() {
		tags, err := f.src.Tags(ctx)
		if f.o.NoList != nil && errors.Is(err, f.o.NoList) {
			return
		}
		if err != nil {
			f.tagsErr = err
			return
		}
		f.tags = map[string]bool{}
		for _, t := range tags {
			f.tags[t] = true
		}
	})
	return f.tags, f.tagsErr
}
