// Package resolve turns image references into digests: the lock entries that
// pin a release to exactly the images it was tested with.
package resolve

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"

	"github.com/ferry-dev/ferry/pkg/access"
	"github.com/ferry-dev/ferry/pkg/imageref"
	"github.com/ferry-dev/ferry/pkg/lock"
	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"golang.org/x/sync/errgroup"
)

// Input is one reference to resolve and where it was found.
type Input struct {
	Ref     imageref.Ref
	Sources []lock.Source
}

// Options tune Resolve.
type Options struct {
	// Warn receives non-fatal findings, such as a tag that no longer points
	// at the digest pinned beside it. Nil discards them.
	Warn func(msg string)
	// KeepManifests resolves by GET instead of HEAD and keeps the bytes
	// in each entry's Manifest: for commands that read every manifest
	// next (pkg, relocate), one request per image instead of two, and
	// one instead of three for an index.
	KeepManifests bool
}

// Resolve looks up every distinct reference concurrently (bounded by the
// client's Limits().All) and returns a lock with one entry per reference as written,
// sorted. The first failure cancels the rest.
func Resolve(ctx context.Context, c *access.Client, inputs []Input, o Options) (*lock.File, error) {
	merged := merge(inputs)
	out := make([]lock.Image, len(merged))
	// Several spellings may name one image ("nginx" and "docker.io/library/nginx:latest"):
	// each distinct normalised reference is asked for once.
	var mu sync.Mutex
	cache := map[string]*call{}
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(c.Limits().All) // manifests: round trips, not bandwidth
	for i, in := range merged {
		g.Go(func() error {
			key := in.Ref.Normalized()
			mu.Lock()
			cl, ok := cache[key]
			if !ok {
				cl = &call{done: make(chan struct{})}
				cache[key] = cl
			}
			mu.Unlock()
			if !ok {
				cl.img, cl.err = one(ctx, c, in.Ref, o)
				close(cl.done)
			} else {
				select {
				case <-cl.done:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			if cl.err != nil {
				return fmt.Errorf("resolving %q%s: %w", in.Ref.Written, where(in.Sources), cl.err)
			}
			img := cl.img
			img.Image = in.Ref.Written
			img.Sources = in.Sources
			out[i] = img
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	f := lock.New()
	f.Images = out
	f.Sort()
	return f, nil
}

type call struct {
	done chan struct{}
	img  lock.Image
	err  error
}

// merge folds inputs written identically into one, keeping every source.
func merge(inputs []Input) []Input {
	var out []Input
	idx := map[string]int{}
	for _, in := range inputs {
		if i, ok := idx[in.Ref.Written]; ok {
			out[i].Sources = append(out[i].Sources, in.Sources...)
			continue
		}
		idx[in.Ref.Written] = len(out)
		out = append(out, Input{Ref: in.Ref, Sources: append([]lock.Source(nil), in.Sources...)})
	}
	return out
}

func where(s []lock.Source) string {
	if len(s) == 0 || s[0].File == "" {
		return ""
	}
	if s[0].Line > 0 {
		return fmt.Sprintf(" (%s:%d)", s[0].File, s[0].Line)
	}
	return fmt.Sprintf(" (%s)", s[0].File)
}

// one resolves a single reference: HEAD for the digest (cheap, and not
// counted against Docker Hub's pull limit), GET only for an index, whose
// children are recorded. With o.KeepManifests, GET at once: the caller
// reads the manifest anyway, and the pull is counted either way.
func one(ctx context.Context, c *access.Client, r imageref.Ref, o Options) (lock.Image, error) {
	ref := c.Reference(r.Reference())
	// The repository's one transport for the run, shared with the walk and
	// the blobs that may follow: one token, not one per call.
	repo := ref.Context()
	rt, err := c.SharedTransport(access.PullKey(repo), func() (http.RoundTripper, error) {
		auth, err := authn.Resolve(ctx, c.Keychain(), repo.Registry)
		if err != nil {
			return nil, err
		}
		base := transport.NewUserAgent(c.Transport(), c.UserAgent())
		return transport.NewWithContext(ctx, repo.Registry, auth, base, []string{repo.Scope(transport.PullScope)})
	})
	if err != nil {
		return lock.Image{}, explain(r, err)
	}
	opts := append(c.Remote(ctx), remote.WithTransport(rt))
	var desc *v1.Descriptor
	var raw []byte
	if !o.KeepManifests {
		desc, err = remote.Head(ref, opts...)
	}
	if o.KeepManifests || (err != nil && needsGet(err)) {
		var d *remote.Descriptor
		d, err = remote.Get(ref, opts...)
		if err == nil {
			desc, raw = &d.Descriptor, d.Manifest
		}
	}
	if err != nil {
		return lock.Image{}, explain(r, err)
	}
	if r.Pinned() && desc.Digest.String() != r.Digest {
		return lock.Image{}, fmt.Errorf("registry served %s for pinned digest %s", desc.Digest, r.Digest)
	}
	img := lock.Image{
		Digest:    desc.Digest.String(),
		MediaType: string(desc.MediaType),
		Size:      desc.Size,
		Resolved:  r.Repo.Digest(desc.Digest.String()).String(),
	}
	if r.Pinned() && r.Tag != "" && o.Warn != nil {
		// The digest wins; say so when the tag beside it has moved on.
		if td, err := remote.Head(c.Reference(r.Repo.Tag(r.Tag)), opts...); err == nil && td.Digest.String() != r.Digest {
			o.Warn(fmt.Sprintf("%q: tag %s now points at %s; using the pinned digest", r.Written, r.Tag, td.Digest))
		}
	}
	if o.KeepManifests {
		img.Manifest = raw
	}
	if desc.MediaType.IsIndex() {
		if raw == nil {
			d, err := remote.Get(c.Reference(r.Repo.Digest(img.Digest)), opts...)
			if err != nil {
				return lock.Image{}, explain(r, err)
			}
			raw = d.Manifest
		}
		var idx v1.IndexManifest
		if err := json.Unmarshal(raw, &idx); err != nil {
			return lock.Image{}, fmt.Errorf("index %s is not valid JSON: %w", img.Digest, err)
		}
		for _, m := range idx.Manifests {
			img.Platforms = append(img.Platforms, lock.Platform{
				Platform:  platform(m.Platform),
				Digest:    m.Digest.String(),
				MediaType: string(m.MediaType),
				Size:      m.Size,
			})
		}
	}
	return img, nil
}

func platform(p *v1.Platform) string {
	if p == nil {
		return ""
	}
	return p.String()
}

// needsGet reports a HEAD failure that a GET may not share: some registries
// answer HEAD with 405, or with an error without a body to explain it.
func needsGet(err error) bool {
	var te *transport.Error
	if errors.As(err, &te) {
		// 5xx was already retried by the access layer: a GET would only
		// wait as long again.
		return te.StatusCode == http.StatusMethodNotAllowed || te.StatusCode == http.StatusBadRequest
	}
	return false
}

// explain adds what to do to the common failures.
func explain(r imageref.Ref, err error) error {
	reg := r.Registry()
	err = access.Explain(err)
	var re *access.RetryError
	if errors.As(err, &re) && re.Status != http.StatusTooManyRequests {
		// It already says which registry, what failed and what to do.
		return err
	}
	var ae *access.AuthError
	if errors.As(err, &ae) {
		return ae // names the registry and gives the login advice
	}
	var te *transport.Error
	if errors.As(err, &te) {
		switch te.StatusCode {
		case http.StatusNotFound:
			if r.Pinned() {
				return fmt.Errorf("%s has no manifest %s in %s: check the digest", reg, r.Digest, r.Repo.RepositoryStr())
			}
			return fmt.Errorf("%s has no tag %q in %s: check the reference", reg, r.TagOrLatest(), r.Repo.RepositoryStr())
		case http.StatusTooManyRequests:
			return fmt.Errorf("%s is rate limiting (429): wait and run again, or log in to raise the limit", reg)
		}
	}
	var ne net.Error
	var oe *net.OpError
	if errors.As(err, &oe) || errors.As(err, &ne) || strings.Contains(err.Error(), "connection refused") {
		return fmt.Errorf("cannot reach %s: %w (is the registry up and the address right?)", reg, err)
	}
	return err
}
