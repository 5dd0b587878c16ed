package bundle

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/ferry-dev/ferry/pkg/graph"
	"github.com/ferry-dev/ferry/pkg/lock"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Annotations on the index.json entries of supply-chain artifacts
// (signatures, attestations, SBOMs, OCI referrers). An entry with
// AnnotationSubject is an artifact, not an image: it has no
// org.opencontainers.image.ref.name, and Entries leaves it out.
const (
	// AnnotationSubject is the digest of the manifest the artifact is
	// attached to.
	AnnotationSubject = "dev.ferry.artifact.subject"
	// AnnotationKind is signature, attestation, sbom or referrer.
	AnnotationKind = "dev.ferry.artifact.kind"
	// AnnotationTag is the tag the artifact had at its source (cosign's
	// sha256-<hex>.sig); absent for a referrer.
	AnnotationTag = "dev.ferry.artifact.tag"
)

// Artifact is a supply-chain artifact carried with an entry.
type Artifact struct {
	// Subject is the digest of the manifest it is attached to.
	Subject v1.Hash
	// Kind is signature, attestation, sbom or referrer.
	Kind string
	// Tag is its tag at the source; "" for a referrer.
	Tag string
	// Root is its manifest, walked; Root.Desc.ArtifactType is kept.
	Root *graph.Node
}

// ArtifactRef is one artifact entry of a bundle's index.json.
type ArtifactRef struct {
	Subject v1.Hash
	Kind    string
	Tag     string
	// Desc is the artifact's descriptor, annotations included.
	Desc v1.Descriptor
}

// Artifacts lists index.json's artifact entries in order.
func (r *Reader) Artifacts() []ArtifactRef { return slices.Clone(r.artifacts) }

// artifactDesc is the index.json entry of a.
func artifactDesc(a Artifact) v1.Descriptor {
	d := v1.Descriptor{
		MediaType:    a.Root.Desc.MediaType,
		Digest:       a.Root.Desc.Digest,
		Size:         int64(len(a.Root.Raw)),
		ArtifactType: a.Root.Desc.ArtifactType,
		Annotations:  map[string]string{AnnotationSubject: a.Subject.String(), AnnotationKind: a.Kind},
	}
	if a.Tag != "" {
		d.Annotations[AnnotationTag] = a.Tag
	}
	return d
}

// artifactKey identifies an artifact entry: the same artifact attached to
// two images of the bundle is stored once.
func artifactKey(a Artifact) string {
	return a.Subject.String() + " " + a.Root.Desc.Digest.String() + " " + a.Tag
}

// readArtifactRef reads an index.json entry that carries AnnotationSubject.
func readArtifactRef(i int, d v1.Descriptor) (ArtifactRef, error) {
	s, err := v1.NewHash(d.Annotations[AnnotationSubject])
	if err != nil {
		return ArtifactRef{}, invalidf("index.json manifests[%d]: %s %q is not a digest", i, AnnotationSubject, d.Annotations[AnnotationSubject])
	}
	if d.Annotations[AnnotationRefName] != "" {
		return ArtifactRef{}, invalidf("index.json manifests[%d]: an artifact entry (%s) with an image name %q", i, AnnotationSubject, d.Annotations[AnnotationRefName])
	}
	tag := d.Annotations[AnnotationTag]
	if strings.ContainsAny(tag, "/:@ ") {
		return ArtifactRef{}, invalidf("index.json manifests[%d]: %s %q is not a tag", i, AnnotationTag, tag)
	}
	return ArtifactRef{Subject: s, Kind: d.Annotations[AnnotationKind], Tag: tag, Desc: d}, nil
}

// LockArtifacts records artifacts as a lock does.
func LockArtifacts(as []Artifact) []lock.Artifact {
	var out []lock.Artifact
	for _, a := range as {
		out = append(out, lock.Artifact{
			Subject:      a.Subject.String(),
			Kind:         a.Kind,
			Digest:       a.Root.Desc.Digest.String(),
			MediaType:    string(a.Root.Desc.MediaType),
			ArtifactType: a.Root.Desc.ArtifactType,
			Size:         int64(len(a.Root.Raw)),
			Tag:          a.Tag,
		})
	}
	return out
}

// WalkArtifacts walks the artifacts a lock entry records from f.
func WalkArtifacts(ctx context.Context, f graph.Fetcher, recorded []lock.Artifact) ([]Artifact, error) {
	var out []Artifact
	for _, la := range recorded {
		s, err := v1.NewHash(la.Subject)
		if err != nil {
			return nil, fmt.Errorf("artifact %s: subject: %w", la.Digest, err)
		}
		h, err := v1.NewHash(la.Digest)
		if err != nil {
			return nil, fmt.Errorf("artifact of %s: %w", la.Subject, err)
		}
		n, err := graph.Walk(ctx, f, v1.Descriptor{Digest: h, Size: la.Size, MediaType: types.MediaType(la.MediaType)}, graph.Options{})
		if err != nil {
			return nil, fmt.Errorf("artifact %s of %s: %w", la.Digest, la.Subject, err)
		}
		n.Desc.ArtifactType = la.ArtifactType
		out = append(out, Artifact{Subject: s, Kind: la.Kind, Tag: la.Tag, Root: n})
	}
	return out, nil
}

// ArtifactsOf lists the artifact entries attached to root's manifests and,
// in turn, to those artifacts, each walked from the bundle.
func (r *Reader) ArtifactsOf(ctx context.Context, root *graph.Node) ([]Artifact, error) {
	by := map[v1.Hash][]ArtifactRef{}
	for _, a := range r.artifacts {
		by[a.Subject] = append(by[a.Subject], a)
	}
	var todo []v1.Hash
	seen := map[v1.Hash]bool{}
	for _, m := range root.Manifests() {
		todo = append(todo, m.Desc.Digest)
		seen[m.Desc.Digest] = true
	}
	var out []Artifact
	for len(todo) > 0 {
		s := todo[0]
		todo = todo[1:]
		for _, a := range by[s] {
			n, err := graph.Walk(ctx, r, a.Desc, graph.Options{})
			if err != nil {
				return nil, fmt.Errorf("artifact %s of %s: %w", a.Desc.Digest, s, err)
			}
			n.Desc.ArtifactType = a.Desc.ArtifactType
			out = append(out, Artifact{Subject: s, Kind: a.Kind, Tag: a.Tag, Root: n})
			if !seen[a.Desc.Digest] {
				seen[a.Desc.Digest] = true
				todo = append(todo, a.Desc.Digest)
			}
		}
	}
	return out, nil
}

// verifyArtifacts walks every artifact entry as Verify walks the images:
// a manifest that cannot be read is a problem of the artifact, a blob
// absent from the tar is missing, and every digest is noted as used by
// the artifact (its kind, digest and subject), for the report.
func (r *Reader) verifyArtifacts(ctx context.Context, bad map[v1.Hash]string, use func(v1.Hash, string), missing map[v1.Hash]string) ([]Problem, error) {
	var problems []Problem
	for _, a := range r.artifacts {
		name := fmt.Sprintf("%s %s of %s", a.Kind, a.Desc.Digest, a.Subject)
		rec := &recorder{r: r, bad: bad, use: func(h v1.Hash) { use(h, name) }}
		root, err := graph.Walk(ctx, rec, a.Desc, graph.Options{IncludeNonDistributable: true})
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if !errors.Is(err, errKnownBad) {
				problems = append(problems, Problem{Images: []string{name}, Reason: reason(err)})
			}
			continue
		}
		for _, b := range root.AllBlobs() {
			use(b.Digest, name)
			size, present := r.Has(b.Digest)
			if ab, expected := r.absent(b.Digest); expected && !present {
				if why := absentSize(ab, b, a.Desc.Digest); why != "" {
					missing[b.Digest] = why
				}
				continue
			}
			switch {
			case !present:
				missing[b.Digest] = "missing from the bundle"
			case size != b.Size:
				missing[b.Digest] = fmt.Sprintf("%d bytes in the bundle, its manifest says %d", size, b.Size)
			}
		}
	}
	return problems, nil
}
