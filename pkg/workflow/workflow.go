// Package workflow runs ferry's commands end to end: each function takes
// its inputs and an Options struct, calls the libraries that do the work
// (resolve, graph, bundle, transfer) in order, and returns a result object
// that pkg/cli prints for people on stderr or for scripts with -o json|yaml.
//
// The result types are the machine-readable output contract documented in
// docs/output.md: field names are stable; new fields may be added.
package workflow

import (
	"fmt"

	"github.com/ferry-dev/ferry/pkg/access"
	"github.com/ferry-dev/ferry/pkg/graph"
	"github.com/ferry-dev/ferry/pkg/imageref"
	"github.com/ferry-dev/ferry/pkg/lock"
	"github.com/ferry-dev/ferry/pkg/referrer"
	"github.com/ferry-dev/ferry/pkg/source"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Image is one image of a result.
type Image struct {
	// Image is the reference as written in the manifests (or given).
	Image     string `json:"image"`
	Digest    string `json:"digest"`
	MediaType string `json:"mediaType,omitempty"`
	// Platforms are os/architecture[/variant] of an index's children, or
	// of the image itself; "unknown" where the config does not say.
	Platforms []string `json:"platforms,omitempty"`
	// Size counts the image's manifests and blobs, each once.
	Size int64 `json:"size,omitempty"`
	// Relocated is where unpkg or relocate put it, by digest.
	Relocated string `json:"relocated,omitempty"`
}

// sources hands out one source.Repo per repository, so that a
// repository's token is fetched once however many images live there.
type sources struct {
	client  *access.Client
	repos   map[string]*source.Repo
	finders map[*source.Repo]*referrer.Finder
	// registries share what each registry showed of its referrers API.
	registries map[string]*referrer.Registry
	// filter picks the artifacts the finders find.
	filter referrer.Filter
}

func newSources(client *access.Client, filter referrer.Filter) *sources {
	return &sources{client: client, repos: map[string]*source.Repo{}, finders: map[*source.Repo]*referrer.Finder{}, registries: map[string]*referrer.Registry{}, filter: filter}
}

// finder is the repository's one finder of signatures, attestations, SBOMs
// and referrers, so that its tag list and referrers API are probed once.
func (s *sources) finder(f graph.Fetcher) *referrer.Finder {
	repo := f.(*source.Repo)
	fd := s.finders[repo]
	if fd == nil {
		host := repo.Repository().RegistryStr()
		reg := s.registries[host]
		if reg == nil {
			reg = &referrer.Registry{}
			s.registries[host] = reg
		}
		fd = referrer.New(repo, referrer.Options{NoAPI: source.ErrNoReferrersAPI, NoList: source.ErrTagsDenied, NoTag: source.ErrNoTag, Jobs: s.client.Limits().All, Registry: reg, Filter: s.filter})
		s.finders[repo] = fd
	}
	return fd
}

// at returns the repository the lock entry is read from now: the
// relocated copy after a first hop, else where it was resolved, else the
// reference as written.
func (s *sources) at(im lock.Image) (imageref.Ref, graph.Fetcher, error) {
	ref, err := imageref.Parse(im.Location())
	if err != nil {
		if ref, err = imageref.Parse(im.Image); err != nil {
			return imageref.Ref{}, nil, fmt.Errorf("lock entry %q: %w", im.Image, err)
		}
	}
	repo := s.repos[ref.Repo.Name()]
	if repo == nil {
		repo = source.New(s.client, ref.Repo)
		s.repos[ref.Repo.Name()] = repo
	}
	if im.Manifest != nil {
		// Fetched when resolving: the walk checks it against the digest.
		if h, err := v1.NewHash(im.Digest); err == nil {
			repo.Keep(h, im.Manifest)
		}
	}
	return ref, repo, nil
}
