// Package serve answers the pull side of the OCI distribution API straight
// from a bundle: manifests, blobs, tag lists, the catalog and referrers,
// read as sections of the tar. Repository names follow unpkg's layouts, so
// a served bundle looks like the registry unpkg would have filled.
package serve

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/ferry-dev/ferry/pkg/bundle"
	"github.com/ferry-dev/ferry/pkg/destination"
	"github.com/ferry-dev/ferry/pkg/graph"
	"github.com/ferry-dev/ferry/pkg/imageref"
	"github.com/ferry-dev/ferry/pkg/lock"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Options say how the bundle's images are named.
type Options struct {
	// Path is put before every repository name ("" for none), as the PATH
	// of unpkg's --repository REG/PATH.
	Path string
	// Layout maps source repositories to served ones, as for unpkg.
	Layout destination.Layout
}

// ErrFlatNeedsPath is returned for the flat layout without a Path: every
// image goes into one repository, which needs a name.
var ErrFlatNeedsPath = errors.New("layout flat serves every image from one repository, which needs a name")

// placeholder stands in for the registry while planning: only the
// repository paths matter to the server, and a host with a dot keeps
// go-containerregistry from adding Docker Hub's "library/".
const placeholder = "ferry.invalid"

// Index is what a bundle serves, per repository, built once at start-up.
type Index struct {
	r     *bundle.Reader
	repos map[string]*repo
	names []string // sorted repository names
	// images are the bundle's entries with where each is served.
	images []served
}

type served struct {
	im   lock.Image
	repo string
}

// repo is one served repository: what its images reach.
type repo struct {
	tags      map[string]v1.Hash
	tagList   []string // sorted
	manifests map[v1.Hash]v1.Descriptor
	blobs     map[v1.Hash]int64
	referrers map[v1.Hash][]v1.Descriptor
}

// New indexes every image of the bundle under the repository the layout
// gives it. It reads every manifest (checked against its digest) but no
// layer.
func New(ctx context.Context, r *bundle.Reader, o Options) (*Index, error) {
	if o.Layout == "" {
		o.Layout = destination.LayoutPath
	}
	if o.Layout == destination.LayoutFlat && o.Path == "" {
		return nil, ErrFlatNeedsPath
	}
	base := placeholder
	if o.Path != "" {
		base += "/" + o.Path
	}
	lf := r.Lock()
	var places []destination.Image
	var images []lock.Image
	var roots []*graph.Node
	for _, ref := range r.Entries() {
		if ref.Name == "" {
			return nil, fmt.Errorf("bundle %s: image %s has no reference name (org.opencontainers.image.ref.name), so ferry cannot tell where to serve it", r.Path(), ref.Desc.Digest)
		}
		im := lock.Image{Image: ref.Name}
		if lf != nil {
			if e, ok := lf.Lookup(ref.Name); ok {
				im = e
			}
		}
		im.Digest = ref.Desc.Digest.String()
		if im.MediaType == "" {
			im.MediaType = string(ref.Desc.MediaType)
		}
		if im.Size == 0 {
			im.Size = ref.Desc.Size
		}
		src := im.Resolved
		if src == "" {
			src = im.Image
		}
		parsed, err := imageref.Parse(src)
		if err != nil {
			return nil, fmt.Errorf("bundle %s: placing %q: %w", r.Path(), ref.Name, err)
		}
		root, err := r.Walk(ctx, ref)
		if err != nil {
			return nil, fmt.Errorf("bundle %s: reading %q: %w", r.Path(), ref.Name, err)
		}
		places = append(places, destination.Image{Written: ref.Name, Source: parsed, Digest: im.Digest})
		images = append(images, im)
		roots = append(roots, root)
	}
	if len(images) == 0 {
		return nil, fmt.Errorf("bundle %s holds no images", r.Path())
	}
	plan, err := destination.Plan(places, base, o.Layout)
	if err != nil {
		return nil, err
	}
	x := &Index{r: r, repos: map[string]*repo{}}
	for i, im := range images {
		t := plan[im.Image]
		name := t.Repo.RepositoryStr()
		rp := x.repos[name]
		if rp == nil {
			rp = &repo{tags: map[string]v1.Hash{}, manifests: map[v1.Hash]v1.Descriptor{}, blobs: map[v1.Hash]int64{}, referrers: map[v1.Hash][]v1.Descriptor{}}
			x.repos[name] = rp
			x.names = append(x.names, name)
		}
		rp.add(roots[i])
		if t.Tag != "" {
			rp.tags[t.Tag] = roots[i].Desc.Digest
		}
		x.images = append(x.images, served{im: im, repo: name})
	}
	sort.Strings(x.names)
	for _, rp := range x.repos {
		for t := range rp.tags {
			rp.tagList = append(rp.tagList, t)
		}
		sort.Strings(rp.tagList)
		for _, refs := range rp.referrers {
			sort.Slice(refs, func(i, j int) bool { return refs[i].Digest.String() < refs[j].Digest.String() })
		}
	}
	return x, nil
}

// add records every manifest and blob the graph of root reaches, and the
// manifests among them that refer to a subject.
func (rp *repo) add(root *graph.Node) {
	for _, m := range root.Manifests() {
		d := m.Desc
		if d.MediaType == "" {
			d.MediaType = mediaTypeOf(m.Raw)
		}
		if _, ok := rp.manifests[d.Digest]; ok {
			continue
		}
		rp.manifests[d.Digest] = v1.Descriptor{MediaType: d.MediaType, Size: int64(len(m.Raw)), Digest: d.Digest}
		for _, b := range m.Blobs {
			rp.blobs[b.Digest] = b.Size
		}
		if subj, desc, ok := referrer(m.Raw, rp.manifests[d.Digest]); ok {
			rp.referrers[subj] = append(rp.referrers[subj], desc)
		}
	}
}

// manifestFields are the parts of a manifest or index the server reads.
type manifestFields struct {
	MediaType    string `json:"mediaType"`
	ArtifactType string `json:"artifactType"`
	Config       *struct {
		MediaType string `json:"mediaType"`
	} `json:"config"`
	Subject *struct {
		Digest string `json:"digest"`
	} `json:"subject"`
	Annotations map[string]string `json:"annotations"`
}

func mediaTypeOf(raw []byte) types.MediaType {
	var m manifestFields
	if json.Unmarshal(raw, &m) == nil && m.MediaType != "" {
		return types.MediaType(m.MediaType)
	}
	return types.OCIManifestSchema1
}

// referrer returns the subject a manifest refers to and its descriptor in
// a referrers list: artifactType is the manifest's own, else its config's
// media type, as the distribution spec says.
func referrer(raw []byte, d v1.Descriptor) (v1.Hash, v1.Descriptor, bool) {
	var m manifestFields
	if json.Unmarshal(raw, &m) != nil || m.Subject == nil {
		return v1.Hash{}, v1.Descriptor{}, false
	}
	subj, err := v1.NewHash(m.Subject.Digest)
	if err != nil {
		return v1.Hash{}, v1.Descriptor{}, false
	}
	d.ArtifactType = m.ArtifactType
	if d.ArtifactType == "" && m.Config != nil {
		d.ArtifactType = m.Config.MediaType
	}
	d.Annotations = m.Annotations
	return subj, d, true
}

// Repositories lists the served repository names, sorted.
func (x *Index) Repositories() []string { return append([]string(nil), x.names...) }

// Lock is the bundle's lock with each image's served location, by digest,
// under registry (HOST:PORT): the lock unpkg would have written had it
// pushed the bundle there.
func (x *Index) Lock(registry string) *lock.File {
	out := lock.New()
	registry = strings.TrimSuffix(registry, "/")
	for _, s := range x.images {
		im := s.im
		im.Relocated = registry + "/" + s.repo + "@" + im.Digest
		out.Images = append(out.Images, im)
	}
	return out
}
