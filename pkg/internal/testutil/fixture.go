package testutil

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// ImageSpec describes an image for PushImage.
type ImageSpec struct {
	// OCI selects OCI media types; otherwise the image is Docker schema2.
	OCI bool
	// Platform goes into the config and, inside an index, the descriptor.
	// Empty means linux/amd64.
	Platform v1.Platform
	// Layers in order, bottom first; none makes a config-only image. Their
	// media type in the manifest follows OCI, not the layer's MediaType.
	Layers []v1.Layer
	// Odd writes the manifest with 3-space indentation, keys in reverse of
	// the usual order and a trailing newline, so that any decode and
	// re-encode on the way through ferry changes the digest.
	Odd bool
}

// IndexSpec describes an index for PushIndex. Children are pushed by
// digest into the same repository first, images before indexes.
type IndexSpec struct {
	// OCI selects an OCI image index; otherwise a Docker manifest list.
	OCI bool
	// Images are the platform-specific children.
	Images []ImageSpec
	// Indexes are nested index children.
	Indexes []IndexSpec
	// Odd formats the index as ImageSpec.Odd does.
	Odd bool
}

// Fixture is what was pushed, for tests to assert against.
type Fixture struct {
	// Ref is HOST/repo:tag for what the test pushed by tag, and
	// HOST/repo@sha256:… for children pushed by digest.
	Ref string
	// Digest is "sha256:…" of Manifest.
	Digest string
	// MediaType is the manifest's media type, also sent as Content-Type.
	MediaType string
	// Manifest is the exact manifest bytes pushed.
	Manifest []byte
	// Platform is the image's platform; zero for indexes.
	Platform v1.Platform
	// Children are the manifests an index lists, in order.
	Children []Fixture
	// Blobs are an image's config then layer digests, in manifest order.
	Blobs []string
}

// Manifests returns the digests of f and every manifest below it, parents
// first.
func (f Fixture) Manifests() []string {
	out := []string{f.Digest}
	for _, c := range f.Children {
		out = append(out, c.Manifests()...)
	}
	return out
}

// AllBlobs returns every blob digest below f, each once.
func (f Fixture) AllBlobs() []string {
	var out []string
	for _, b := range f.Blobs {
		if !slices.Contains(out, b) {
			out = append(out, b)
		}
	}
	for _, c := range f.Children {
		for _, b := range c.AllBlobs() {
			if !slices.Contains(out, b) {
				out = append(out, b)
			}
		}
	}
	return out
}

// PushImage pushes the image spec describes to reg as repo:tag, blobs
// first, and fails the test on any error.
func PushImage(t testing.TB, reg *Registry, repo, tag string, spec ImageSpec) Fixture {
	t.Helper()
	f, err := newPush(t.Context(), reg).image(repo, tag, spec)
	if err != nil {
		t.Fatalf("pushing image %s: %v", reg.Ref(repo+":"+tag), err)
	}
	return f
}

// PushIndex pushes the index spec describes to reg as repo:tag, children
// first, and fails the test on any error.
func PushIndex(t testing.TB, reg *Registry, repo, tag string, spec IndexSpec) Fixture {
	t.Helper()
	f, err := newPush(t.Context(), reg).index(repo, tag, spec)
	if err != nil {
		t.Fatalf("pushing index %s: %v", reg.Ref(repo+":"+tag), err)
	}
	return f
}

// push holds what one PushImage or PushIndex call needs; the pusher is
// shared so the registry is pinged once.
type push struct {
	ctx    context.Context
	reg    *Registry
	pusher *remote.Pusher
	err    error
}

func newPush(ctx context.Context, reg *Registry) *push {
	p := &push{ctx: ctx, reg: reg}
	p.pusher, p.err = remote.NewPusher(reg.RemoteOptions(ctx)...)
	return p
}

// image pushes an image; an empty tag pushes it by digest.
func (p *push) image(repo, tag string, spec ImageSpec) (Fixture, error) {
	if p.err != nil {
		return Fixture{}, p.err
	}
	r, err := name.NewRepository(p.reg.Ref(repo), name.Insecure)
	if err != nil {
		return Fixture{}, fmt.Errorf("parsing repository: %w", err)
	}
	plat := spec.Platform
	if plat.OS == "" {
		plat.OS, plat.Architecture = "linux", "amd64"
	}
	mt, configMT, layerMT := types.DockerManifestSchema2, types.DockerConfigJSON, types.DockerLayer
	if spec.OCI {
		mt, configMT, layerMT = types.OCIManifestSchema1, types.OCIConfigJSON, types.OCILayer
	}

	layers := make([]any, 0, len(spec.Layers))
	diffIDs := make([]any, 0, len(spec.Layers))
	var blobs []string
	for i, l := range spec.Layers {
		d, err := descriptor(l, layerMT)
		if err != nil {
			return Fixture{}, fmt.Errorf("layer %d: %w", i, err)
		}
		diff, err := l.DiffID()
		if err != nil {
			return Fixture{}, fmt.Errorf("layer %d: diff id: %w", i, err)
		}
		layers = append(layers, d)
		diffIDs = append(diffIDs, diff.String())
		blobs = append(blobs, digestOf(d))
	}
	cfg := object{
		{"architecture", plat.Architecture},
		{"os", plat.OS},
	}
	if plat.Variant != "" {
		cfg = append(cfg, member{"variant", plat.Variant})
	}
	cfg = append(cfg,
		member{"config", object{}},
		member{"rootfs", object{{"type", "layers"}, {"diff_ids", diffIDs}}},
	)
	config := static.NewLayer(encode(cfg, false), configMT)
	configDesc, err := descriptor(config, configMT)
	if err != nil {
		return Fixture{}, fmt.Errorf("config: %w", err)
	}
	blobs = append([]string{digestOf(configDesc)}, blobs...)

	// The registry refuses a manifest whose blobs it lacks.
	for _, l := range append([]v1.Layer{config}, spec.Layers...) {
		if err := p.pusher.Upload(p.ctx, r, l); err != nil {
			return Fixture{}, fmt.Errorf("uploading blob: %w", err)
		}
	}
	m := object{
		{"schemaVersion", 2},
		{"mediaType", string(mt)},
		{"config", configDesc},
		{"layers", layers},
	}
	f, err := p.put(r, tag, mt, encode(m, spec.Odd))
	f.Platform, f.Blobs = plat, blobs
	return f, err
}

// index pushes an index and its children; an empty tag pushes it by
// digest.
func (p *push) index(repo, tag string, spec IndexSpec) (Fixture, error) {
	if p.err != nil {
		return Fixture{}, p.err
	}
	r, err := name.NewRepository(p.reg.Ref(repo), name.Insecure)
	if err != nil {
		return Fixture{}, fmt.Errorf("parsing repository: %w", err)
	}
	mt := types.DockerManifestList
	if spec.OCI {
		mt = types.OCIImageIndex
	}
	var children []Fixture
	manifests := []any{}
	for i, s := range spec.Images {
		c, err := p.image(repo, "", s)
		if err != nil {
			return Fixture{}, fmt.Errorf("child image %d: %w", i, err)
		}
		plat := object{{"architecture", c.Platform.Architecture}, {"os", c.Platform.OS}}
		if c.Platform.Variant != "" {
			plat = append(plat, member{"variant", c.Platform.Variant})
		}
		children = append(children, c)
		manifests = append(manifests, append(childDescriptor(c), member{"platform", plat}))
	}
	for i, s := range spec.Indexes {
		c, err := p.index(repo, "", s)
		if err != nil {
			return Fixture{}, fmt.Errorf("child index %d: %w", i, err)
		}
		children = append(children, c)
		manifests = append(manifests, childDescriptor(c))
	}
	m := object{
		{"schemaVersion", 2},
		{"mediaType", string(mt)},
		{"manifests", manifests},
	}
	f, err := p.put(r, tag, mt, encode(m, spec.Odd))
	f.Children = children
	return f, err
}

// put sends raw as the manifest for r:tag, or r@digest when tag is empty.
func (p *push) put(r name.Repository, tag string, mt types.MediaType, raw []byte) (Fixture, error) {
	sum := sha256.Sum256(raw)
	f := Fixture{
		Digest:    "sha256:" + hex.EncodeToString(sum[:]),
		MediaType: string(mt),
		Manifest:  raw,
	}
	var ref name.Reference = r.Tag(tag)
	if tag == "" {
		ref = r.Digest(f.Digest)
	}
	f.Ref = ref.String()
	if err := p.pusher.Put(p.ctx, ref, rawManifest{raw, mt}); err != nil {
		return f, fmt.Errorf("putting manifest %s: %w", f.Ref, err)
	}
	return f, nil
}

// rawManifest hands go-containerregistry our bytes untouched; with
// MediaType it also sets the Content-Type the registry stores.
type rawManifest struct {
	raw []byte
	mt  types.MediaType
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.raw, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return m.mt, nil }

func descriptor(l v1.Layer, mt types.MediaType) (object, error) {
	d, err := l.Digest()
	if err != nil {
		return nil, fmt.Errorf("digest: %w", err)
	}
	n, err := l.Size()
	if err != nil {
		return nil, fmt.Errorf("size: %w", err)
	}
	return object{{"mediaType", string(mt)}, {"size", n}, {"digest", d.String()}}, nil
}

func childDescriptor(c Fixture) object {
	return object{{"mediaType", c.MediaType}, {"size", len(c.Manifest)}, {"digest", c.Digest}}
}

func digestOf(desc object) string {
	for _, m := range desc {
		if m.key == "digest" {
			return m.value.(string)
		}
	}
	return ""
}

// object is a JSON object whose key order we choose, which encoding/json
// would not let us do with structs or maps.
type object []member

type member struct {
	key   string
	value any // object, []any, string, int or int64
}

// encode renders v compactly, or with odd formatting: 3-space indent, keys
// in reverse order and a trailing newline.
func encode(v any, odd bool) []byte {
	var b bytes.Buffer
	write(&b, v, odd, 0)
	if odd {
		b.WriteByte('\n')
	}
	return b.Bytes()
}

func write(b *bytes.Buffer, v any, odd bool, depth int) {
	newline := func(d int) {
		if odd {
			b.WriteByte('\n')
			b.WriteString(strings.Repeat("   ", d))
		}
	}
	switch v := v.(type) {
	case object:
		b.WriteByte('{')
		if len(v) == 0 {
			b.WriteByte('}')
			return
		}
		ms := slices.Clone(v)
		if odd {
			slices.Reverse(ms)
		}
		for i, m := range ms {
			if i > 0 {
				b.WriteByte(',')
			}
			newline(depth + 1)
			write(b, m.key, odd, depth+1)
			b.WriteByte(':')
			if odd {
				b.WriteByte(' ')
			}
			write(b, m.value, odd, depth+1)
		}
		newline(depth)
		b.WriteByte('}')
	case []any:
		b.WriteByte('[')
		if len(v) == 0 {
			b.WriteByte(']')
			return
		}
		for i, e := range v {
			if i > 0 {
				b.WriteByte(',')
			}
			newline(depth + 1)
			write(b, e, odd, depth+1)
		}
		newline(depth)
		b.WriteByte(']')
	case string:
		s, _ := json.Marshal(v) // a string always marshals
		b.Write(s)
	case int:
		b.WriteString(strconv.Itoa(v))
	case int64:
		b.WriteString(strconv.FormatInt(v, 10))
	default:
		panic(fmt.Sprintf("testutil: cannot encode %T", v))
	}
}

// ArtifactSpec describes a supply-chain artifact for PushArtifact: an OCI
// manifest with an empty config and one payload layer, as cosign and oras
// make them.
type ArtifactSpec struct {
	// Subject, when set, goes into the manifest's subject field: an OCI
	// 1.1 referrer of it.
	Subject *Fixture
	// ArtifactType is the manifest's artifactType; empty leaves it out.
	ArtifactType string
	// Tag is the tag it is pushed under (cosign's sha256-<hex>.sig); empty
	// pushes it by digest.
	Tag string
	// Payload is the layer's content, of media type PayloadType.
	Payload     []byte
	PayloadType string
}

// PushArtifact pushes the artifact spec describes to reg's repo, blobs
// first, and fails the test on any error.
func PushArtifact(t testing.TB, reg *Registry, repo string, spec ArtifactSpec) Fixture {
	t.Helper()
	p := newPush(t.Context(), reg)
	if p.err != nil {
		t.Fatal(p.err)
	}
	r, err := name.NewRepository(p.reg.Ref(repo), name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	config := static.NewLayer([]byte("{}"), "application/vnd.oci.empty.v1+json")
	pt := types.MediaType(spec.PayloadType)
	if pt == "" {
		pt = "application/vnd.dev.cosign.simplesigning.v1+json"
	}
	payload := static.NewLayer(spec.Payload, pt)
	cd, err := descriptor(config, "application/vnd.oci.empty.v1+json")
	if err != nil {
		t.Fatal(err)
	}
	pd, err := descriptor(payload, pt)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []v1.Layer{config, payload} {
		if err := p.pusher.Upload(p.ctx, r, l); err != nil {
			t.Fatalf("uploading artifact blob: %v", err)
		}
	}
	m := object{{"schemaVersion", 2}, {"mediaType", string(types.OCIManifestSchema1)}}
	if spec.ArtifactType != "" {
		m = append(m, member{"artifactType", spec.ArtifactType})
	}
	m = append(m, member{"config", cd}, member{"layers", []any{pd}})
	if spec.Subject != nil {
		m = append(m, member{"subject", childDescriptor(*spec.Subject)})
	}
	f, err := p.put(r, spec.Tag, types.OCIManifestSchema1, encode(m, false))
	if err != nil {
		t.Fatal(err)
	}
	f.Blobs = []string{digestOf(cd), digestOf(pd)}
	return f
}

// PushReferrersIndex tags, in reg's repo, the index of referrers the
// referrers tag schema keeps for subject (sha256-<hex>), listing refs.
func PushReferrersIndex(t testing.TB, reg *Registry, repo, subject string, refs ...Fixture) Fixture {
	t.Helper()
	p := newPush(t.Context(), reg)
	if p.err != nil {
		t.Fatal(p.err)
	}
	r, err := name.NewRepository(p.reg.Ref(repo), name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	manifests := []any{}
	for _, f := range refs {
		manifests = append(manifests, childDescriptor(f))
	}
	m := object{{"schemaVersion", 2}, {"mediaType", string(types.OCIImageIndex)}, {"manifests", manifests}}
	f, err := p.put(r, strings.Replace(subject, ":", "-", 1), types.OCIImageIndex, encode(m, false))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// CosignTag is the tag cosign gives an artifact of the manifest digest:
// suffix ".sig", ".att" or ".sbom".
func CosignTag(digest, suffix string) string {
	return strings.Replace(digest, ":", "-", 1) + suffix
}

// TagDigest returns the digest repo:tag names in reg, "" when absent.
func TagDigest(t testing.TB, reg *Registry, repo, tag string) string {
	t.Helper()
	ref, err := name.NewTag(reg.Ref(repo)+":"+tag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	d, err := remote.Head(ref, reg.RemoteOptions(t.Context())...)
	if err != nil {
		return ""
	}
	return d.Digest.String()
}

// ReferrersIndex lists the digests the referrers tag schema's index for
// subject holds in reg's repo; none when there is no index.
func ReferrersIndex(t testing.TB, reg *Registry, repo, subject string) []string {
	t.Helper()
	ref, err := name.NewTag(reg.Ref(repo)+":"+strings.Replace(subject, ":", "-", 1), name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	d, err := remote.Get(ref, reg.RemoteOptions(t.Context())...)
	if err != nil {
		return nil
	}
	var idx struct {
		Manifests []struct {
			Digest string `json:"digest"`
		} `json:"manifests"`
	}
	if err := json.Unmarshal(d.Manifest, &idx); err != nil {
		t.Fatalf("the referrers index of %s in %s is not JSON: %v", subject, repo, err)
	}
	var out []string
	for _, m := range idx.Manifests {
		out = append(out, m.Digest)
	}
	return out
}
