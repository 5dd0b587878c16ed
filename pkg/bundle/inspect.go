package bundle

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/ferry-dev/ferry/pkg/graph"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Summary is what a bundle holds.
type Summary struct {
	// Images are index.json's entries, in order.
	Images []ImageSummary `json:"images"`
	// FileSize is the bundle's length in bytes.
	FileSize int64 `json:"fileSize"`
	// TotalBytes adds up every image's bytes as if each were stored apart.
	TotalBytes int64 `json:"totalBytes"`
	// UniqueBytes counts every manifest and blob the images use once:
	// what the bundle stores.
	UniqueBytes int64 `json:"uniqueBytes"`
	// SharedBytes counts, once, the blobs used by more than one image:
	// what storing them once saved TotalBytes-UniqueBytes of.
	SharedBytes int64 `json:"sharedBytes"`
	// HasLock says whether the bundle carries ferry.lock.yaml.
	HasLock bool `json:"hasLock"`
	// TrailingBytes counts bytes after the end of the tar archive, which
	// readers ignore; 'verify -i' refuses them.
	TrailingBytes int64 `json:"trailingBytes,omitempty"`
	// Parts is the parts file of a split bundle (see PartsPath).
	Parts *Parts `json:"parts,omitempty"`
	// Delta is set for a delta bundle: the blobs it leaves out, expected
	// at the target. UniqueBytes does not count them.
	Delta *DeltaSummary `json:"delta,omitempty"`
}

// ImageSummary is one image or index of a bundle.
type ImageSummary struct {
	// Name is the reference as written.
	Name      string `json:"name"`
	Digest    string `json:"digest"`
	MediaType string `json:"mediaType"`
	// Size counts the image's manifests and blobs, each once.
	Size int64 `json:"size"`
	// Platforms are the image manifests: the index's (nested ones too),
	// or the image itself.
	Platforms []PlatformSummary `json:"platforms"`
	// NonDistributable lists layers left out of the bundle.
	NonDistributable []string `json:"nonDistributable,omitempty"`
	// Artifacts are the signatures, attestations, SBOMs and referrers
	// attached to the image or one of its platforms, each with those
	// attached to it in turn.
	Artifacts []ArtifactSummary `json:"artifacts,omitempty"`
}

// ArtifactSummary is one supply-chain artifact of a bundle.
type ArtifactSummary struct {
	// Subject is the digest it is attached to.
	Subject      string `json:"subject"`
	Kind         string `json:"kind"`
	Tag          string `json:"tag,omitempty"`
	Digest       string `json:"digest"`
	MediaType    string `json:"mediaType"`
	ArtifactType string `json:"artifactType,omitempty"`
	// Artifacts are attached to this one (a signature of an attestation).
	Artifacts []ArtifactSummary `json:"artifacts,omitempty"`
}

// artifactTree lists the artifacts attached to subject and, nested, to
// them; path stops a cycle.
func artifactTree(by map[v1.Hash][]ArtifactRef, subject v1.Hash, path map[v1.Hash]bool) []ArtifactSummary {
	if path[subject] {
		return nil
	}
	path[subject] = true
	defer delete(path, subject)
	var out []ArtifactSummary
	for _, a := range by[subject] {
		out = append(out, ArtifactSummary{
			Subject: a.Subject.String(), Kind: a.Kind, Tag: a.Tag, Digest: a.Desc.Digest.String(),
			MediaType: string(a.Desc.MediaType), ArtifactType: a.Desc.ArtifactType,
			Artifacts: artifactTree(by, a.Desc.Digest, path),
		})
	}
	return out
}

// PlatformUnknown is the platform of an image whose index entry and config
// do not say (a config without os, an artifact).
const PlatformUnknown = "unknown"

// PlatformSummary is one image manifest.
type PlatformSummary struct {
	// Platform is os/architecture[/variant], from the index or the config,
	// or PlatformUnknown.
	Platform  string `json:"platform"`
	Digest    string `json:"digest"`
	MediaType string `json:"mediaType"`
	// Size is the manifest, its config and its layers.
	Size int64 `json:"size"`
}

// Inspect summarises the bundle at path: images, platforms and sizes. It
// checks every manifest it reads, but not the layers: see Verify.
func Inspect(path string) (Summary, error) {
	r, err := Open(path)
	if err != nil {
		return Summary{}, err
	}
	defer r.Close()
	ctx := context.Background()
	s := Summary{FileSize: r.size, HasLock: r.lock != nil, TrailingBytes: r.trailing, Images: []ImageSummary{}, Delta: r.delta.Summary()}
	if base, ok := splitBase(path); ok {
		if s.Parts, err = ReadParts(base); err != nil {
			return Summary{}, err
		}
	}
	users := map[v1.Hash]int{}
	attached := map[v1.Hash][]ArtifactRef{}
	for _, a := range r.artifacts {
		attached[a.Subject] = append(attached[a.Subject], a)
	}
	sizes := map[v1.Hash]int64{}
	for _, ref := range r.refs {
		root, err := r.Walk(ctx, ref)
		if err != nil {
			return Summary{}, fmt.Errorf("inspecting %s in %s: %w", ref.Name, path, err)
		}
		im := ImageSummary{Name: ref.Name, Digest: ref.Desc.Digest.String(), MediaType: string(root.Desc.MediaType), Platforms: []PlatformSummary{}}
		mine := map[v1.Hash]int64{}
		for _, m := range root.Manifests() {
			mine[m.Desc.Digest] = int64(len(m.Raw))
			for _, b := range m.Blobs {
				mine[b.Digest] = b.Size
			}
			for _, b := range m.Skipped {
				im.NonDistributable = appendOnce(im.NonDistributable, b.Digest.String())
			}
		}
		leaves(root, func(n *graph.Node, p *v1.Platform) {
			ps := PlatformSummary{Digest: n.Desc.Digest.String(), MediaType: string(n.Desc.MediaType), Size: int64(len(n.Raw))}
			for _, b := range n.Blobs {
				ps.Size += b.Size
			}
			if p == nil && len(n.Blobs) > 0 {
				p = r.configPlatform(n.Blobs[0])
			}
			ps.Platform = PlatformUnknown
			if p != nil && p.OS != "" {
				ps.Platform = p.String()
			}
			im.Platforms = append(im.Platforms, ps)
		})
		for _, m := range root.Manifests() {
			im.Artifacts = append(im.Artifacts, artifactTree(attached, m.Desc.Digest, map[v1.Hash]bool{})...)
		}
		for h, n := range mine {
			im.Size += n
			users[h]++
			sizes[h] = n
		}
		s.TotalBytes += im.Size
		s.Images = append(s.Images, im)
	}
	for h, n := range users {
		if _, ok := r.absent(h); ok {
			if _, held := r.Has(h); !held {
				continue
			}
		}
		s.UniqueBytes += sizes[h]
		if n > 1 {
			s.SharedBytes += sizes[h]
		}
	}
	return s, nil
}

func appendOnce(s []string, v string) []string {
	for _, x := range s {
		if x == v {
			return s
		}
	}
	return append(s, v)
}

// leaves calls f for every image manifest below n, with the platform its
// index gives it.
func leaves(n *graph.Node, f func(*graph.Node, *v1.Platform)) {
	if len(n.Children) == 0 && !n.Desc.MediaType.IsIndex() {
		f(n, n.Desc.Platform)
		return
	}
	for _, c := range n.Children {
		leaves(c, f)
	}
}

// configPlatform reads an image's platform from its config, when the
// config is in the bundle, intact and small.
func (r *Reader) configPlatform(d v1.Descriptor) *v1.Platform {
	if d.Size > graph.MaxManifestSize {
		return nil
	}
	rc, err := r.Blob(context.Background(), d)
	if err != nil {
		return nil
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return nil
	}
	var cfg struct {
		OS           string `json:"os"`
		Architecture string `json:"architecture"`
		Variant      string `json:"variant"`
	}
	if json.Unmarshal(b, &cfg) != nil || cfg.OS == "" {
		return nil
	}
	return &v1.Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant}
}
