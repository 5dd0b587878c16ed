package workflow

import (
	"context"
	"fmt"
	"slices"

	"github.com/ferry-dev/ferry/pkg/access"
	"github.com/ferry-dev/ferry/pkg/bundle"
	"github.com/ferry-dev/ferry/pkg/graph"
	"github.com/ferry-dev/ferry/pkg/lock"
	"github.com/ferry-dev/ferry/pkg/referrer"
	"github.com/ferry-dev/ferry/pkg/transfer"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/errgroup"
)

// artifactsOf is a lookup of a root's artifacts started before its walk,
// so that discovery runs while the manifests are fetched.
type artifactsOf struct {
	f    *referrer.Finder
	done chan struct{}
	got  []referrer.Artifact
	err  error
}

// findArtifacts starts finding the artifacts of root.
func findArtifacts(ctx context.Context, f *referrer.Finder, root v1.Hash) *artifactsOf {
	a := &artifactsOf{f: f, done: make(chan struct{})}
	go func() {
		defer close(a.done)
		a.got, a.err = f.Find(ctx, root)
	}()
	return a
}

// and waits for the root's artifacts, finds those of the other manifests of
// the walked graph (an index's children) and returns them all.
func (a *artifactsOf) and(ctx context.Context, walked *graph.Node) ([]bundle.Artifact, error) {
	var rest []v1.Hash
	for _, m := range walked.Manifests() {
		if m.Desc.Digest != walked.Desc.Digest {
			rest = append(rest, m.Desc.Digest)
		}
	}
	more, err := a.f.Find(ctx, rest...)
	<-a.done
	if a.err != nil {
		return nil, a.err
	}
	if err != nil {
		return nil, err
	}
	return bundleArtifacts(append(a.got, more...)), nil
}

// bundleArtifacts hands artifacts found to a bundle or a lock.
func bundleArtifacts(found []referrer.Artifact) []bundle.Artifact {
	var out []bundle.Artifact
	for _, r := range found {
		n := r.Node
		n.Desc.ArtifactType = r.Desc.ArtifactType
		out = append(out, bundle.Artifact{Subject: r.Subject, Kind: r.Kind, Tag: r.Tag, Root: n})
	}
	return out
}

// toTransfer hands artifacts read from a bundle or a registry to a push.
func toTransfer(arts []bundle.Artifact) []transfer.Artifact {
	var out []transfer.Artifact
	for _, a := range arts {
		out = append(out, transfer.Artifact{Subject: a.Subject, Tag: a.Tag, Root: a.Root})
	}
	return out
}

// withArtifacts walks every entry's image and finds its artifacts at the
// same time (see fetchManifests), so that relocate pushes them after it
// and records them in the lock it writes. src is the one the entries read
// from: one connection, one token per repository.
func withArtifacts(ctx context.Context, src *sources, lf *lock.File, entries []transfer.Entry) error {
	walked := *lf
	walked.Images = slices.Clone(lf.Images)
	found, err := fetchManifests(ctx, src, &walked, graph.Options{}, true)
	if err != nil {
		return err
	}
	for i := range entries {
		entries[i].Root = found[i].Root
		entries[i].Artifacts = toTransfer(found[i].Artifacts)
		entries[i].Image.Artifacts = walked.Images[i].Artifacts
	}
	return nil
}

// keepArtifacts keeps, in their order, the artifacts of the image root
// that f picks, and drops with an artifact left out every artifact
// attached to it: nothing travels whose subject stays behind.
func keepArtifacts(arts []bundle.Artifact, root *graph.Node, f referrer.Filter) []bundle.Artifact {
	if f.All() {
		return arts
	}
	have := map[v1.Hash]bool{}
	for _, m := range root.Manifests() {
		have[m.Desc.Digest] = true
	}
	taken := make([]bool, len(arts))
	// Artifacts are ordered by subject digest, not by depth: repeat until
	// no more are reached.
	for changed := true; changed; {
		changed = false
		for i, a := range arts {
			if taken[i] || !have[a.Subject] || !f.Keep(a.Kind, a.Root.Desc.ArtifactType) {
				continue
			}
			taken[i], have[a.Root.Desc.Digest], changed = true, true, true
		}
	}
	var out []bundle.Artifact
	for i, a := range arts {
		if taken[i] {
			out = append(out, a)
		}
	}
	return out
}

// ArtifactsOptions tune FindArtifacts.
type ArtifactsOptions struct {
	// ArtifactTypes picks the artifacts recorded (by kind or
	// artifactType); the zero Filter takes all.
	ArtifactTypes referrer.Filter
}

// FindArtifacts records in lf, for every image, the signatures,
// attestations, SBOMs and OCI referrers attached to it, to each platform
// the lock lists and, recursively, to those artifacts, as pkg and
// relocate record them: 'ferry resolve' in CI writes them into its lock.
// It fetches no image manifest, only the artifacts' own; an image written
// several ways is looked up once.
func FindArtifacts(ctx context.Context, client *access.Client, lf *lock.File, o ArtifactsOptions) error {
	src := newSources(client, o.ArtifactTypes)
	type lookup struct {
		found []lock.Artifact
	}
	lookups := map[string]*lookup{}
	at := make([]*lookup, len(lf.Images))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(client.Limits().All)
	for i, im := range lf.Images {
		ref, repo, err := src.at(im)
		if err != nil {
			return err
		}
		h, err := v1.NewHash(im.Digest)
		if err != nil {
			return fmt.Errorf("lock entry %q has no valid digest (%q)", im.Image, im.Digest)
		}
		key := ref.Repo.Name() + "@" + im.Digest
		if at[i] = lookups[key]; at[i] != nil {
			continue
		}
		var children []v1.Hash
		for _, p := range im.Platforms {
			c, err := v1.NewHash(p.Digest)
			if err != nil {
				return fmt.Errorf("lock entry %q: platform %q has no valid digest (%q)", im.Image, p.Platform, p.Digest)
			}
			if c != h {
				children = append(children, c)
			}
		}
		l := &lookup{}
		lookups[key], at[i] = l, l
		f := src.finder(repo)
		g.Go(func() error {
			// As pkg has them: the image's own, then its platforms'.
			own, err := f.Find(gctx, h)
			if err != nil {
				return fmt.Errorf("finding signatures, attestations and referrers of %q (%s@%s): %w (--supply-chain=false leaves them out)", im.Image, ref.Repo, im.Digest, err)
			}
			more, err := f.Find(gctx, children...)
			if err != nil {
				return fmt.Errorf("finding signatures, attestations and referrers of the platforms of %q (%s@%s): %w (--supply-chain=false leaves them out)", im.Image, ref.Repo, im.Digest, err)
			}
			l.found = bundle.LockArtifacts(bundleArtifacts(append(own, more...)))
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for i := range lf.Images {
		lf.Images[i].Artifacts = at[i].found
	}
	lf.ArtifactTypes = o.ArtifactTypes.Words()
	return nil
}
