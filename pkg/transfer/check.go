package transfer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"

	"github.com/ferry-dev/ferry/pkg/access"
	"github.com/ferry-dev/ferry/pkg/graph"
	"github.com/ferry-dev/ferry/pkg/imageref"
	"github.com/ferry-dev/ferry/pkg/lock"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/errgroup"
)

// Missing is one thing a registry lacks.
type Missing struct {
	// Image is the lock entry, as written.
	Image string
	// Location is where it was looked for, REPO@DIGEST.
	Location string
	// What is "manifest", "blob", or why the image could not be read.
	What string
}

// IncompleteError lists what a registry lacks of a lock.
type IncompleteError struct {
	Missing []Missing
}

func (e *IncompleteError) Error() string {
	parts := make([]string, len(e.Missing))
	for i, m := range e.Missing {
		parts[i] = fmt.Sprintf("%q: %s %s", m.Image, m.What, m.Location)
	}
	return fmt.Sprintf("the registry lacks %d item(s) of the lock: %s", len(e.Missing), strings.Join(parts, "; "))
}

// Check makes sure every image of the lock is complete where the lock
// says it is (relocated, else resolved): the manifest or index, every
// child manifest, and every blob. It returns an *IncompleteError naming
// each missing piece, or the error that kept it from looking.
func Check(ctx context.Context, client *access.Client, f *lock.File) error {
	type entry struct {
		im   lock.Image
		repo name.Repository
		desc v1.Descriptor
	}
	var entries []entry
	repos := map[string]map[string]name.Repository{}
	for _, im := range f.Images {
		loc := im.Location()
		if loc == "" {
			return fmt.Errorf("checking %q: the lock gives no location (resolved or relocated)", im.Image)
		}
		r, err := imageref.Parse(loc)
		if err != nil {
			return fmt.Errorf("checking %q: %w", im.Image, err)
		}
		if !r.Pinned() {
			return fmt.Errorf("checking %q: %s is not pinned by digest", im.Image, loc)
		}
		h, err := v1.NewHash(r.Digest)
		if err != nil {
			return fmt.Errorf("checking %q: %w", im.Image, err)
		}
		repo := client.Repository(r.Repo)
		if repos[repo.RegistryStr()] == nil {
			repos[repo.RegistryStr()] = map[string]name.Repository{}
		}
		repos[repo.RegistryStr()][repo.Name()] = repo
		entries = append(entries, entry{im: im, repo: repo, desc: v1.Descriptor{Digest: h, MediaType: types.MediaType(im.MediaType), Size: im.Size}})
	}

	conns := map[string]*conn{}
	for reg, rs := range repos {
		var scopes []string
		var any name.Repository
		for _, r := range rs {
			scopes = append(scopes, r.Scope(transport.PullScope))
			any = r
		}
		sort.Strings(scopes)
		c, err := dial(ctx, client, any.Registry, scopes)
		if err != nil {
			return err
		}
		conns[reg] = c
	}

	var mu sync.Mutex
	var missing []Missing
	report := func(m Missing) {
		mu.Lock()
		missing = append(missing, m)
		mu.Unlock()
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(client.Limits().All) // manifests and HEADs: round trips
	for _, e := range entries {
		c := conns[e.repo.RegistryStr()]
		g.Go(func() error {
			at := e.repo.Name() + "@" + e.desc.Digest.String()
			root, err := graph.Walk(gctx, repoFetcher{c: c, repo: e.repo}, e.desc, graph.Options{})
			var nf *notFoundError
			switch {
			case errors.As(err, &nf):
				report(Missing{Image: e.im.Image, Location: e.repo.Name() + "@" + nf.digest.String(), What: "manifest"})
				return nil
			case errors.Is(err, graph.ErrDigestMismatch):
				report(Missing{Image: e.im.Image, Location: at, What: "manifest with other content (" + err.Error() + ")"})
				return nil
			case err != nil:
				return fmt.Errorf("checking %q at %s: %w", e.im.Image, at, err)
			}
			for _, b := range root.AllBlobs() {
				var ok bool
				err := retry(gctx, func() (err error) {
					ok, err = c.headBlob(gctx, e.repo, b.Digest)
					return err
				})
				if err != nil {
					return fmt.Errorf("checking blob %s of %q in %s: %w", b.Digest, e.im.Image, e.repo.Name(), err)
				}
				if !ok {
					report(Missing{Image: e.im.Image, Location: e.repo.Name() + "@" + b.Digest.String(), What: "blob"})
				}
			}
			return checkArtifacts(gctx, c, e.repo, e.im, report)
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	if len(missing) > 0 {
		sort.Slice(missing, func(i, j int) bool {
			if missing[i].Image != missing[j].Image {
				return missing[i].Image < missing[j].Image
			}
			return missing[i].Location < missing[j].Location
		})
		return &IncompleteError{Missing: missing}
	}
	return nil
}

// repoFetcher reads manifests through a conn, for walking what a registry
// holds.
type repoFetcher struct {
	c    *conn
	repo name.Repository
}

type notFoundError struct{ digest v1.Hash }

func (e *notFoundError) Error() string { return "manifest " + e.digest.String() + " not found" }

func (f repoFetcher) Manifest(ctx context.Context, d v1.Descriptor) ([]byte, error) {
	var b []byte
	err := retry(ctx, func() (err error) {
		b, err = f.c.getManifest(ctx, f.repo, d)
		return err
	})
	if errors.Is(err, errNotFound) {
		return nil, &notFoundError{digest: d.Digest}
	}
	return b, err
}

func (f repoFetcher) Blob(context.Context, v1.Descriptor) (io.ReadCloser, error) {
	return nil, errors.New("checking reads no blobs")
}

// checkArtifacts makes sure every artifact the lock records for im is
// whole in repo, under its tag if it had one, and, for a referrer, listed
// among its subject's referrers.
func checkArtifacts(ctx context.Context, c *conn, repo name.Repository, im lock.Image, report func(Missing)) error {
	for _, a := range im.Artifacts {
		h, err := v1.NewHash(a.Digest)
		if err != nil {
			return fmt.Errorf("checking artifact of %q: %w", im.Image, err)
		}
		at := repo.Name() + "@" + a.Digest
		n, err := graph.Walk(ctx, repoFetcher{c: c, repo: repo}, v1.Descriptor{Digest: h, Size: a.Size, MediaType: types.MediaType(a.MediaType)}, graph.Options{})
		var nf *notFoundError
		switch {
		case errors.As(err, &nf):
			report(Missing{Image: im.Image, Location: repo.Name() + "@" + nf.digest.String(), What: a.Kind})
			continue
		case err != nil:
			return fmt.Errorf("checking %s %s of %q: %w", a.Kind, at, im.Image, err)
		}
		for _, b := range n.AllBlobs() {
			var ok bool
			if err := retry(ctx, func() (err error) { ok, err = c.headBlob(ctx, repo, b.Digest); return err }); err != nil {
				return fmt.Errorf("checking blob %s of %s %s: %w", b.Digest, a.Kind, at, err)
			}
			if !ok {
				report(Missing{Image: im.Image, Location: repo.Name() + "@" + b.Digest.String(), What: "blob of " + a.Kind})
			}
		}
		if a.Tag != "" {
			var ok bool
			var got string
			if err := retry(ctx, func() (err error) { ok, got, err = c.headManifest(ctx, repo, a.Tag); return err }); err != nil {
				return fmt.Errorf("checking tag %s:%s: %w", repo.Name(), a.Tag, err)
			}
			if !ok || got != a.Digest {
				report(Missing{Image: im.Image, Location: repo.Name() + ":" + a.Tag, What: a.Kind + " tag"})
			}
			continue
		}
		s := subjectOf(n.Raw)
		if s == nil {
			continue
		}
		listed, err := c.listsReferrer(ctx, repo, s.Digest, h)
		if err != nil {
			return fmt.Errorf("checking the referrers of %s@%s: %w", repo.Name(), s.Digest, err)
		}
		if !listed {
			report(Missing{Image: im.Image, Location: repo.Name() + "@" + a.Digest, What: "referrer not listed for " + s.Digest.String()})
		}
	}
	return nil
}
