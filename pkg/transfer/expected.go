package transfer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/ferry-dev/ferry/pkg/access"
	"github.com/ferry-dev/ferry/pkg/destination"
	"github.com/ferry-dev/ferry/pkg/imageref"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"golang.org/x/sync/errgroup"
)

// Expected is a blob the source lacks on purpose (one a delta bundle left
// out) that the target must already hold: in the repository that needs
// it, or in another repository of the same registry to mount it from.
type Expected struct {
	Desc v1.Descriptor
	// Repositories may hold it (where a base lock says its images went).
	Repositories []string
	// Sources are source references whose place under --repository holds
	// it (the images of a base bundle, pushed as this push places them).
	Sources []string
	// Bases name what should have brought it to the target, for messages.
	Bases []string
}

// ErrBaseMissing is matched by a *BaseMissingError.
var ErrBaseMissing = errors.New("the target lacks blobs the delta relies on")

// BaseMissingError lists the expected blobs the target does not hold.
// Nothing was pushed.
type BaseMissingError struct {
	Missing []MissingBlob
}

// MissingBlob is one expected blob the target lacks.
type MissingBlob struct {
	Digest string
	Size   int64
	// Images need it; Bases should have brought it.
	Images []string
	Bases  []string
}

func (e *BaseMissingError) Error() string {
	const show = 3
	var parts []string
	for i, m := range e.Missing {
		if i == show {
			parts = append(parts, fmt.Sprintf("and %d more", len(e.Missing)-show))
			break
		}
		s := fmt.Sprintf("%s (%d bytes, needed by %s", m.Digest, m.Size, strings.Join(m.Images, ", "))
		if len(m.Bases) > 0 {
			s += "; expected from " + strings.Join(m.Bases, ", ")
		}
		parts = append(parts, s+")")
	}
	return fmt.Sprintf("%s: %d missing, nothing pushed: %s", ErrBaseMissing, len(e.Missing), strings.Join(parts, "; "))
}

// Unwrap makes errors.Is(err, ErrBaseMissing) hold.
func (e *BaseMissingError) Unwrap() error { return ErrBaseMissing }

// checkExpected makes sure the target holds every expected blob that
// images use, asking only (HEAD), never writing: first in each repository
// that needs it, then in the repositories that may hold it on the same
// registry. It returns, per blob, a repository that holds it (a mount
// source for the push), or a *BaseMissingError listing every blob found
// nowhere.
func checkExpected(ctx context.Context, client *access.Client, images []Image, expected []Expected, o RelocateOptions) (map[v1.Hash][]name.Repository, error) {
	exp := map[v1.Hash]Expected{}
	for _, e := range expected {
		exp[e.Desc.Digest] = e
	}
	type need struct {
		desc    v1.Descriptor
		targets []name.Repository
		images  []string
	}
	needs := map[v1.Hash]*need{}
	var order []v1.Hash
	for _, im := range images {
		to := client.Repository(im.To)
		for _, d := range im.Root.AllBlobs() {
			if _, ok := exp[d.Digest]; !ok {
				continue
			}
			n := needs[d.Digest]
			if n == nil {
				n = &need{desc: d}
				needs[d.Digest] = n
				order = append(order, d.Digest)
			}
			if !slices.ContainsFunc(n.targets, func(r name.Repository) bool { return r.Name() == to.Name() }) {
				n.targets = append(n.targets, to)
			}
			if name := baseName(im.Name); !slices.Contains(n.images, name) {
				n.images = append(n.images, name)
			}
		}
	}
	if len(needs) == 0 {
		return nil, nil
	}
	sort.Slice(order, func(i, j int) bool { return order[i].String() < order[j].String() })

	// Where else each blob may be: the base lock's repositories, and where
	// this push puts the base bundle's sources.
	candidates := func(e Expected) []name.Repository {
		var out []name.Repository
		for _, s := range e.Repositories {
			if r, err := name.NewRepository(s); err == nil {
				out = append(out, client.Repository(r))
			}
		}
		for _, s := range e.Sources {
			ref, err := imageref.Parse(s)
			if err != nil {
				continue
			}
			plan, err := destination.Plan([]destination.Image{{Written: s, Source: ref, Digest: e.Desc.Digest.String()}}, o.Repository, o.Layout)
			if err == nil {
				out = append(out, client.Repository(plan[s].Repo))
			}
		}
		return out
	}
	// One connection per target registry, allowed to read every
	// repository asked.
	scopes := map[string][]string{}
	regs := map[string]name.Registry{}
	ask := map[v1.Hash][]name.Repository{}
	for _, n := range needs {
		for _, t := range n.targets {
			regs[t.RegistryStr()] = t.Registry
		}
	}
	for _, h := range order {
		n := needs[h]
		repos := slices.Clone(n.targets)
		for _, c := range candidates(exp[h]) {
			if _, ok := regs[c.RegistryStr()]; ok && !slices.ContainsFunc(repos, func(r name.Repository) bool { return r.Name() == c.Name() }) {
				repos = append(repos, c)
			}
		}
		ask[h] = repos
		for _, r := range repos {
			scopes[r.RegistryStr()] = append(scopes[r.RegistryStr()], r.Scope(transport.PullScope))
		}
	}
	conns := map[string]*conn{}
	for reg, r := range regs {
		s := slices.Compact(slices.Sorted(slices.Values(scopes[reg])))
		c, err := dial(ctx, client, r, s)
		if err != nil {
			return nil, fmt.Errorf("checking the blobs the delta relies on: %w", err)
		}
		conns[reg] = c
	}

	held := map[v1.Hash][]name.Repository{}
	var mu sync.Mutex
	var missing []MissingBlob
	limits := o.limits(client)
	// HEADs: round trips, not bandwidth.
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(limits.All)
	for _, h := range order {
		n := needs[h]
		g.Go(func() error {
			// Each registry that needs it must hold it somewhere.
			for _, reg := range registriesOf(n.targets) {
				var found *name.Repository
				for _, r := range ask[h] {
					if r.RegistryStr() != reg {
						continue
					}
					var ok bool
					err := retry(gctx, func() (err error) {
						ok, err = conns[reg].headBlob(gctx, r, h)
						return err
					})
					if err != nil {
						return fmt.Errorf("checking blob %s of %q in %s: %w", h, n.images[0], r.Name(), err)
					}
					if ok {
						found = &r
						break
					}
				}
				mu.Lock()
				if found != nil {
					held[h] = append(held[h], *found)
				} else {
					missing = append(missing, MissingBlob{Digest: h.String(), Size: n.desc.Size, Images: n.images, Bases: exp[h].Bases})
				}
				mu.Unlock()
				if found == nil {
					return nil
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if len(missing) > 0 {
		sort.Slice(missing, func(i, j int) bool { return missing[i].Digest < missing[j].Digest })
		return nil, &BaseMissingError{Missing: missing}
	}
	return held, nil
}

// baseName is an artifact image's subject image name: artifacts are
// named "IMAGE (sha256:…)" for messages.
func baseName(s string) string {
	if i := strings.LastIndex(s, " (sha256:"); i > 0 {
		return s[:i]
	}
	return s
}
