package bundle

import (
	"context"
	"slices"

	"github.com/ferry-dev/ferry/pkg/graph"
	"github.com/ferry-dev/ferry/pkg/lock"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Current reports whether path already holds, byte for byte, the bundle a
// run of lf would write, judged without a registry: the digests a lock pins
// fix every manifest, so the manifests are walked from the bundle itself,
// the plan is laid out from them as Write would (foreign layers left out
// and recorded in the lock unless includeNonDistributable), and the file is
// compared with it as Write compares before fetching (size, every header,
// index.json, the lock, every manifest). Blobs are not re-hashed: a bundle
// reaches its final path only once each was checked. Any doubt (no file,
// not a bundle, a manifest missing) is false, and the caller goes the way
// with the registry.
func Current(ctx context.Context, path string, lf *lock.File, includeNonDistributable bool) bool {
	return CurrentWith(ctx, path, lf, CurrentOptions{IncludeNonDistributable: includeNonDistributable})
}

// CurrentOptions tune CurrentWith.
type CurrentOptions struct {
	// IncludeNonDistributable: foreign layers are in the bundle.
	IncludeNonDistributable bool
	// Artifacts: an image whose lock entry records no artifacts takes
	// those the bundle's own lock records for the same reference and
	// digest, as pkg would have found and recorded them. A lock from
	// 'ferry resolve' then still recognises the bundle pkg made from it,
	// without asking a registry again.
	Artifacts bool
}

// CurrentWith is Current with options.
func CurrentWith(ctx context.Context, path string, lf *lock.File, o CurrentOptions) bool {
	includeNonDistributable := o.IncludeNonDistributable
	r, err := Open(path)
	if err != nil {
		return false
	}
	defer r.Close()
	want := *lf
	want.Images = slices.Clone(lf.Images)
	entries := make([]Entry, len(want.Images))
	for i, im := range want.Images {
		h, err := v1.NewHash(im.Digest)
		if err != nil {
			return false
		}
		desc := v1.Descriptor{Digest: h, Size: im.Size, MediaType: types.MediaType(im.MediaType)}
		root, err := graph.Walk(ctx, r, desc, graph.Options{IncludeNonDistributable: includeNonDistributable})
		if err != nil {
			return false
		}
		// Recorded as pkg records them.
		var left []string
		for _, d := range root.AllSkipped() {
			left = append(left, d.Digest.String())
		}
		slices.Sort(left)
		want.Images[i].NonDistributable = left
		if o.Artifacts && len(im.Artifacts) == 0 && r.Lock() != nil {
			if had, ok := r.Lock().Lookup(im.Image); ok && had.Digest == im.Digest {
				want.Images[i].Artifacts = had.Artifacts
			}
		}
		arts, err := WalkArtifacts(ctx, r, want.Images[i].Artifacts)
		if err != nil {
			return false
		}
		entries[i] = Entry{Name: im.Image, Root: root, Fetcher: r, Artifacts: arts}
	}
	lockYAML, err := encodeLock(&want)
	if err != nil {
		return false
	}
	p, err := newPlan(entries, lockYAML, nil)
	if err != nil {
		return false
	}
	if base, ok := splitBase(path); ok {
		return p.matchesSplit(base, 0)
	}
	same, err := p.matches(path)
	return err == nil && same
}
