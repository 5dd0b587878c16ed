package workflow

import (
	"context"
	"slices"

	"github.com/ferry-dev/ferry/pkg/bundle"
	"github.com/ferry-dev/ferry/pkg/graph"
	"github.com/ferry-dev/ferry/pkg/lock"
	"github.com/ferry-dev/ferry/pkg/referrer"
	"github.com/ferry-dev/ferry/pkg/transfer"
	v1 "github.com/google/go-containerregistry/pkg/v1"
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
	var out []bundle.Artifact
	for _, r := range append(a.got, more...) {
		n := r.Node
		n.Desc.ArtifactType = r.Desc.ArtifactType
		out = append(out, bundle.Artifact{Subject: r.Subject, Kind: r.Kind, Tag: r.Tag, Root: n})
	}
	return out, nil
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
