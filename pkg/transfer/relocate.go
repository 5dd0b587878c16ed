package transfer

import (
	"context"
	"fmt"

	"github.com/ferry-dev/ferry/pkg/access"
	"github.com/ferry-dev/ferry/pkg/destination"
	"github.com/ferry-dev/ferry/pkg/graph"
	"github.com/ferry-dev/ferry/pkg/imageref"
	"github.com/ferry-dev/ferry/pkg/lock"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/errgroup"
)

// Entry is one lock entry to relocate and where to read it from.
type Entry struct {
	// Image is the lock entry: the reference as written, its digest, and
	// where it was resolved (which decides where it lands).
	Image lock.Image
	// From serves the image's manifests and blobs: its source registry
	// repository, or a bundle.
	From graph.Fetcher
	// Root is the image's graph when already walked; nil walks it from
	// From.
	Root *graph.Node
}

// RelocateOptions say where images land and how to push them.
type RelocateOptions struct {
	Options
	// Repository is REG/PATH, as given with --repository.
	Repository string
	// Layout is how source repositories map under Repository.
	Layout destination.Layout
}

// Relocate places every entry under o.Repository (see package
// destination), pushes them there and returns the lock with Relocated set
// for each entry, in entry order. The placement is checked for collisions
// before anything is read or pushed.
func Relocate(ctx context.Context, client *access.Client, entries []Entry, o RelocateOptions) (*lock.File, Result, error) {
	places := make([]destination.Image, len(entries))
	for i, e := range entries {
		src := e.Image.Resolved
		if src == "" {
			src = e.Image.Image
		}
		ref, err := imageref.Parse(src)
		if err != nil {
			return nil, Result{}, fmt.Errorf("placing %q: %w", e.Image.Image, err)
		}
		digest := e.Image.Digest
		if digest == "" && e.Root != nil {
			digest = e.Root.Desc.Digest.String()
		}
		if digest == "" {
			digest = ref.Digest
		}
		if digest == "" {
			return nil, Result{}, fmt.Errorf("placing %q: no digest known: resolve it first", e.Image.Image)
		}
		e.Image.Digest = digest
		entries[i] = e
		places[i] = destination.Image{Written: e.Image.Image, Source: ref, Digest: digest}
	}
	plan, err := destination.Plan(places, o.Repository, o.Layout)
	if err != nil {
		return nil, Result{}, err
	}

	jobs := o.Jobs
	if jobs <= 0 {
		jobs = client.Jobs()
	}
	roots := make([]*graph.Node, len(entries))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(jobs)
	for i, e := range entries {
		if e.Root != nil {
			roots[i] = e.Root
			continue
		}
		g.Go(func() error {
			h, err := v1.NewHash(e.Image.Digest)
			if err != nil {
				return fmt.Errorf("reading %q: %w", e.Image.Image, err)
			}
			d := v1.Descriptor{Digest: h, MediaType: types.MediaType(e.Image.MediaType), Size: e.Image.Size}
			n, err := graph.Walk(gctx, e.From, d, graph.Options{})
			if err != nil {
				return fmt.Errorf("reading %q from %s: %w", e.Image.Image, e.Image.Location(), err)
			}
			roots[i] = n
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, Result{}, err
	}

	images := make([]Image, len(entries))
	for i, e := range entries {
		t := plan[e.Image.Image]
		images[i] = Image{Name: e.Image.Image, Root: roots[i], From: e.From, To: t.Repo, Tag: t.Tag}
	}
	res, err := Push(ctx, client, images, o.Options)
	if err != nil {
		return nil, res, err
	}

	out := lock.New()
	for i, e := range entries {
		im := e.Image
		root := roots[i].Desc
		im.Digest = root.Digest.String()
		if im.MediaType == "" {
			im.MediaType = string(root.MediaType)
		}
		im.Relocated = plan[im.Image].Reference(im.Digest)
		out.Images = append(out.Images, im)
	}
	return out, res, nil
}
