package main

import (
	"archive/tar"
	"bytes"
	"compress/flate"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Media types the generated set mixes.
const (
	mtDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	mtDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
	mtDockerConfig   = "application/vnd.docker.container.image.v1+json"
	mtDockerLayer    = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	mtOCIManifest    = "application/vnd.oci.image.manifest.v1+json"
	mtOCIIndex       = "application/vnd.oci.image.index.v1+json"
	mtOCIConfig      = "application/vnd.oci.image.config.v1+json"
	mtOCILayer       = "application/vnd.oci.image.layer.v1.tar+gzip"
)

const mib = 1 << 20

// planVersion names the generator in the cache key: change it whenever
// planRelease (release 1) or genLayer would produce other bytes.
const planVersion = "v2"

// blob is one content-addressed object of the set.
type blob struct {
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
	MediaType string `json:"mediaType"`
}

// manifest is an image manifest: a single image, or one platform of an index.
type manifest struct {
	blob
	Platform string `json:"platform"`
	Config   blob   `json:"config"`
	Layers   []blob `json:"layers"`
}

// image is one repository:tag of the set, as the release names it.
type image struct {
	Name    string     `json:"name"` // repository path on the source registry, e.g. "src/gateway"
	Tag     string     `json:"tag"`
	Top     blob       `json:"top"`
	IsIndex bool       `json:"isIndex"`
	Manif   []manifest `json:"manifests"` // the children of an index, or the image itself
}

// imageSet is the generated source content, cached beside the registry storage.
type imageSet struct {
	Seed        uint64  `json:"seed"`
	Scale       float64 `json:"scale"`
	BigLayerMiB int     `json:"bigLayerMiB"`
	Images      []image `json:"images"`
	// UniqueBytes is the size of every distinct blob and manifest once.
	UniqueBytes int64 `json:"uniqueBytes"`
	UniqueBlobs int   `json:"uniqueBlobs"`
	// TotalBytes is what the images add up to when each repository counts its
	// own copy of a shared layer: what a tool that never mounts uploads.
	TotalBytes int64 `json:"totalBytes"`
}

// blobs lists every distinct blob and manifest of the set once.
func (s *imageSet) blobs() []blob {
	seen := map[string]bool{}
	var out []blob
	add := func(b blob) {
		if !seen[b.Digest] {
			seen[b.Digest] = true
			out = append(out, b)
		}
	}
	for _, im := range s.Images {
		add(im.Top)
		for _, m := range im.Manif {
			add(m.blob)
			add(m.Config)
			for _, l := range m.Layers {
				add(l)
			}
		}
	}
	return out
}

// layerBlobs counts the distinct configs and layers: the blobs a tool
// uploads (manifests are PUT, not uploaded).
func (s *imageSet) layerBlobs() int {
	n := s.UniqueBlobs
	seen := map[string]bool{}
	for _, im := range s.Images {
		for _, d := range append([]string{im.Top.Digest}, manifestDigests(im)...) {
			if !seen[d] {
				seen[d] = true
				n--
			}
		}
	}
	return n
}

func manifestDigests(im image) []string {
	var out []string
	for _, m := range im.Manif {
		out = append(out, m.Digest)
	}
	return out
}

func (s *imageSet) tally() {
	var u int64
	bl := s.blobs()
	for _, b := range bl {
		u += b.Size
	}
	s.UniqueBytes, s.UniqueBlobs = u, len(bl)
	var t int64
	for _, im := range s.Images {
		seen := map[string]bool{}
		add := func(b blob) {
			if !seen[b.Digest] {
				seen[b.Digest] = true
				t += b.Size
			}
		}
		add(im.Top)
		for _, m := range im.Manif {
			add(m.blob)
			add(m.Config)
			for _, l := range m.Layers {
				add(l)
			}
		}
	}
	s.TotalBytes = t
}

// layerSpec is a layer before it is generated: an id that seeds its bytes and
// the size of the file it holds.
type layerSpec struct {
	id   string
	size int64
}

// platformSpec and repoSpec describe the set before any byte exists.
type platformSpec struct {
	arch   string
	layers []layerSpec
}

type repoSpec struct {
	name      string
	docker    bool // Docker schema 2 (and a Docker manifest list) rather than OCI
	index     bool
	platforms []platformSpec
}

var archs = []string{"amd64", "arm64", "ppc64le"}

// planRelease decides, from the seed alone, what every repository holds in
// a release of the set. Sizes are scaled; ids are not, so a layer's bytes
// depend only on seed and id. Release 1 is the set itself; from release 2 on, each platform's medium layer and first small layer are
// rebuilt (new ids, so new bytes, same sizes), as a monthly update does;
// the base, large and other small layers stay, shared with release 1.
func planRelease(seed uint64, scale float64, bigMiB int, release int) []repoSpec {
	rebuilt := func(id string) string {
		if release > 1 {
			return fmt.Sprintf("%s-r%d", id, release)
		}
		return id
	}
	rng := rand.New(rand.NewChaCha8(seedBytes(seed, "plan")))
	sz := func(m float64) int64 {
		n := int64(math.Round(m * mib * scale))
		return max(n, 512)
	}
	between := func(lo, hi float64) float64 { return lo + rng.Float64()*(hi-lo) }
	base := func(kind, arch string) layerSpec {
		sizes := map[string]float64{"os": 30, "slim": 7, "runtime": 45}
		return layerSpec{id: "base-" + kind + "-" + arch, size: sz(sizes[kind])}
	}
	// app layers: one medium, a few small, sometimes a large incompressible one.
	app := func(repo, arch string, large bool) []layerSpec {
		var ls []layerSpec
		if large {
			ls = append(ls, layerSpec{id: repo + "-" + arch + "-large", size: sz(between(50, 100))})
		}
		ls = append(ls, layerSpec{id: rebuilt(repo + "-" + arch + "-medium"), size: sz(between(8, 30))})
		for i := range 3 + rng.IntN(6) {
			id := fmt.Sprintf("%s-%s-small%d", repo, arch, i)
			if i == 0 {
				id = rebuilt(id)
			}
			ls = append(ls, layerSpec{id: id, size: sz(between(0.02, 3))})
		}
		return ls
	}
	type shape struct {
		name           string
		docker, index  bool
		bases          []string
		largePlatforms int // how many platforms get a large layer
	}
	shapes := []shape{
		{"gateway", true, true, []string{"os", "runtime"}, 1},
		{"api", false, true, []string{"os"}, 1},
		{"worker", false, true, []string{"slim", "runtime"}, 1},
		{"agent", false, true, []string{"slim"}, 1},
		{"scheduler", true, false, []string{"os", "runtime"}, 1},
		{"ui", false, false, []string{"os"}, 0},
		{"db-migrate", true, false, []string{"os", "runtime"}, 1},
		{"exporter", false, false, []string{"slim"}, 0},
		{"controller", true, false, []string{"os"}, 1},
		{"webhook", false, false, []string{"slim", "runtime"}, 1},
		{"cli", true, false, []string{"slim"}, 0},
		{"batch", false, false, []string{"os", "runtime"}, 1},
	}
	var out []repoSpec
	for _, s := range shapes {
		r := repoSpec{name: "src/" + s.name, docker: s.docker, index: s.index}
		plats := archs[:1]
		if s.index {
			plats = archs
		}
		for i, a := range plats {
			var ls []layerSpec
			for _, b := range s.bases {
				ls = append(ls, base(b, a))
			}
			ls = append(ls, app(s.name, a, i < s.largePlatforms)...)
			r.platforms = append(r.platforms, platformSpec{arch: a, layers: ls})
		}
		out = append(out, r)
	}
	if bigMiB > 0 {
		out = append(out, repoSpec{name: "src/big", platforms: []platformSpec{{arch: "amd64", layers: []layerSpec{
			base("slim", "amd64"), {id: "big-layer", size: int64(bigMiB) * mib},
		}}}})
	}
	return out
}

func seedBytes(seed uint64, id string) [32]byte {
	h := sha256.New()
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], seed)
	h.Write(b[:])
	h.Write([]byte(id))
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}

// genLayer streams a layer: a gzip (stored blocks, so incompressible and
// cheap) of a tar holding one file of seeded random bytes. It returns the
// digest and size of what was written and the diffID of the tar.
func genLayer(w io.Writer, seed uint64, l layerSpec) (digest string, size int64, diffID string, err error) {
	comp := sha256.New()
	cw := &countWriter{w: io.MultiWriter(w, comp)}
	gz, err := gzip.NewWriterLevel(cw, flate.NoCompression)
	if err != nil {
		return "", 0, "", err
	}
	gz.ModTime = time.Unix(0, 0)
	unc := sha256.New()
	tw := tar.NewWriter(io.MultiWriter(gz, unc))
	hdr := &tar.Header{Name: "data/" + l.id + ".bin", Mode: 0o644, Size: l.size, ModTime: time.Unix(1700000000, 0), Typeflag: tar.TypeReg, Format: tar.FormatPAX}
	if err := tw.WriteHeader(hdr); err != nil {
		return "", 0, "", err
	}
	src := rand.NewChaCha8(seedBytes(seed, l.id))
	buf := make([]byte, 256<<10)
	for left := l.size; left > 0; {
		n := min(int64(len(buf)), left)
		src.Read(buf[:n])
		if _, err := tw.Write(buf[:n]); err != nil {
			return "", 0, "", err
		}
		left -= n
	}
	if err := tw.Close(); err != nil {
		return "", 0, "", err
	}
	if err := gz.Close(); err != nil {
		return "", 0, "", err
	}
	return "sha256:" + hex.EncodeToString(comp.Sum(nil)), cw.n, "sha256:" + hex.EncodeToString(unc.Sum(nil)), nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// pusher writes raw blobs and manifests to a plain-HTTP registry.
type pusher struct {
	base   string // http://host
	client *http.Client
}

// uploadStream sends a blob of unknown digest in one streamed PATCH, then
// completes it with the digest gen reports.
func (p *pusher) uploadStream(ctx context.Context, repo string, gen func(io.Writer) (string, error)) (string, error) {
	loc, err := p.startUpload(ctx, repo, "")
	if err != nil {
		return "", err
	}
	pr, pw := io.Pipe()
	var digest string
	genErr := make(chan error, 1)
	go func() {
		d, err := gen(pw)
		digest = d
		pw.CloseWithError(err)
		genErr <- err
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodPatch, loc, pr)
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := p.client.Do(req)
	if err != nil {
		pr.CloseWithError(err)
		<-genErr
		return "", fmt.Errorf("PATCH %s: %w", repo, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err := <-genErr; err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusAccepted {
		return "", fmt.Errorf("PATCH blob upload in %s: %s", repo, resp.Status)
	}
	loc, err = resolveLoc(loc, resp.Header.Get("Location"))
	if err != nil {
		return "", err
	}
	return digest, p.finish(ctx, loc, digest, nil)
}

// uploadBytes uploads a small blob (config) monolithically.
func (p *pusher) uploadBytes(ctx context.Context, repo string, b []byte) (string, error) {
	d := digestOf(b)
	loc, err := p.startUpload(ctx, repo, "")
	if err != nil {
		return "", err
	}
	return d, p.finish(ctx, loc, d, b)
}

// mount makes a blob of another repository available in repo.
func (p *pusher) mount(ctx context.Context, repo, from, digest string) error {
	u := fmt.Sprintf("%s/v2/%s/blobs/uploads/?mount=%s&from=%s", p.base, repo, url.QueryEscape(digest), url.QueryEscape(from))
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("mounting %s into %s: %s", digest, repo, resp.Status)
	}
	return nil
}

func (p *pusher) startUpload(ctx context.Context, repo, _ string) (string, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, p.base+"/v2/"+repo+"/blobs/uploads/", nil)
	resp, err := p.client.Do(req)
	if err != nil {
		return "", err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return "", fmt.Errorf("starting blob upload in %s: %s", repo, resp.Status)
	}
	return resolveLoc(p.base+"/v2/"+repo+"/blobs/uploads/", resp.Header.Get("Location"))
}

func (p *pusher) finish(ctx context.Context, loc, digest string, body []byte) error {
	return p.finishReader(ctx, loc, digest, bytes.NewReader(body), int64(len(body)))
}

// finishReader completes an upload with a monolithic PUT of size bytes.
func (p *pusher) finishReader(ctx context.Context, loc, digest string, body io.Reader, size int64) error {
	u, err := url.Parse(loc)
	if err != nil {
		return err
	}
	q := u.Query()
	q.Set("digest", digest)
	u.RawQuery = q.Encode()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPut, u.String(), io.NopCloser(body))
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("completing upload of %s: %s: %s", digest, resp.Status, strings.TrimSpace(string(msg)))
	}
	return nil
}

func (p *pusher) putManifest(ctx context.Context, repo, ref, mediaType string, b []byte) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPut, p.base+"/v2/"+repo+"/manifests/"+ref, bytes.NewReader(b))
	req.Header.Set("Content-Type", mediaType)
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("PUT manifest %s:%s: %s: %s", repo, ref, resp.Status, strings.TrimSpace(string(msg)))
	}
	return nil
}

func resolveLoc(base, loc string) (string, error) {
	b, err := url.Parse(base)
	if err != nil {
		return "", err
	}
	l, err := url.Parse(loc)
	if err != nil {
		return "", err
	}
	return b.ResolveReference(l).String(), nil
}

func digestOf(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// oddJSON encodes v with a three-space indent and a trailing newline: bytes
// no Go re-encoding reproduces, so a tool that re-serialises is caught.
func oddJSON(v any) []byte {
	b, err := json.MarshalIndent(v, "", "   ")
	if err != nil {
		panic(err) // only the fixed types below are encoded
	}
	return append(b, '\n')
}

type jsonDesc struct {
	MediaType string            `json:"mediaType"`
	Size      int64             `json:"size"`
	Digest    string            `json:"digest"`
	Platform  map[string]string `json:"platform,omitempty"`
}

type jsonManifest struct {
	SchemaVersion int        `json:"schemaVersion"`
	MediaType     string     `json:"mediaType"`
	Config        *jsonDesc  `json:"config,omitempty"`
	Layers        []jsonDesc `json:"layers,omitempty"`
	Manifests     []jsonDesc `json:"manifests,omitempty"`
}

// generate pushes the planned set into the registry at host and returns it.
func generate(ctx context.Context, host string, seed uint64, scale float64, bigMiB int, logf func(string, ...any)) (*imageSet, error) {
	return generateRelease(ctx, host, seed, scale, bigMiB, 1, logf)
}

// generateRelease pushes release n of the set (see planRelease), tagged
// "vN", into the registry at host and returns it.
func generateRelease(ctx context.Context, host string, seed uint64, scale float64, bigMiB, release int, logf func(string, ...any)) (*imageSet, error) {
	set := &imageSet{Seed: seed, Scale: scale, BigLayerMiB: bigMiB}
	return set, pushPlan(ctx, host, seed, planRelease(seed, scale, bigMiB, release), set, release, 1, logf)
}

// pushPlan generates the planned repositories into the registry at host,
// tagged "vN" for release N, and appends them to set, logging every
// logEvery-th repository.
func pushPlan(ctx context.Context, host string, seed uint64, plan []repoSpec, set *imageSet, release, logEvery int, logf func(string, ...any)) error {
	p := &pusher{base: "http://" + host, client: &http.Client{Transport: newTransport()}}
	type done struct {
		b      blob // media type unset; set per manifest
		diffID string
		repo   string
	}
	layers := map[string]*done{} // by layer id
	inRepo := map[string]bool{}  // repo+" "+digest
	start := time.Now()
	var generated int64
	for _, r := range plan {
		im := image{Name: r.name, Tag: fmt.Sprintf("v%d", release), IsIndex: r.index}
		for _, pl := range r.platforms {
			var diffIDs []string
			var ls []blob
			for _, l := range pl.layers {
				d, ok := layers[l.id]
				if !ok {
					var size int64
					var diffID string
					dg, err := p.uploadStream(ctx, r.name, func(w io.Writer) (string, error) {
						dg, n, di, err := genLayer(w, seed, l)
						size, diffID = n, di
						return dg, err
					})
					if err != nil {
						return fmt.Errorf("generating layer %s: %w", l.id, err)
					}
					d = &done{b: blob{Digest: dg, Size: size}, diffID: diffID, repo: r.name}
					layers[l.id] = d
					inRepo[r.name+" "+dg] = true
					generated += size
				} else if !inRepo[r.name+" "+d.b.Digest] {
					if err := p.mount(ctx, r.name, d.repo, d.b.Digest); err != nil {
						return err
					}
					inRepo[r.name+" "+d.b.Digest] = true
				}
				lb := d.b
				lb.MediaType = mtOCILayer
				if r.docker {
					lb.MediaType = mtDockerLayer
				}
				ls = append(ls, lb)
				diffIDs = append(diffIDs, d.diffID)
			}
			cfg := oddJSON(map[string]any{
				"architecture": pl.arch,
				"os":           "linux",
				"created":      "2024-01-01T00:00:00Z",
				"config":       map[string]any{"Env": []string{"PATH=/usr/bin"}, "Labels": map[string]string{"bench.ferry.dev/image": r.name}},
				"rootfs":       map[string]any{"type": "layers", "diff_ids": diffIDs},
			})
			cd, err := p.uploadBytes(ctx, r.name, cfg)
			if err != nil {
				return err
			}
			cfgB := blob{Digest: cd, Size: int64(len(cfg)), MediaType: mtOCIConfig}
			mMT := mtOCIManifest
			if r.docker {
				cfgB.MediaType, mMT = mtDockerConfig, mtDockerManifest
			}
			jm := jsonManifest{SchemaVersion: 2, MediaType: mMT, Config: &jsonDesc{MediaType: cfgB.MediaType, Size: cfgB.Size, Digest: cfgB.Digest}}
			for _, l := range ls {
				jm.Layers = append(jm.Layers, jsonDesc{MediaType: l.MediaType, Size: l.Size, Digest: l.Digest})
			}
			mb := oddJSON(jm)
			m := manifest{blob: blob{Digest: digestOf(mb), Size: int64(len(mb)), MediaType: mMT}, Platform: "linux/" + pl.arch, Config: cfgB, Layers: ls}
			ref := m.Digest
			if !r.index {
				ref = im.Tag
			}
			if err := p.putManifest(ctx, r.name, ref, mMT, mb); err != nil {
				return err
			}
			im.Manif = append(im.Manif, m)
		}
		if r.index {
			iMT := mtOCIIndex
			if r.docker {
				iMT = mtDockerList
			}
			ji := jsonManifest{SchemaVersion: 2, MediaType: iMT}
			for _, m := range im.Manif {
				os, arch, _ := strings.Cut(m.Platform, "/")
				ji.Manifests = append(ji.Manifests, jsonDesc{MediaType: m.MediaType, Size: m.Size, Digest: m.Digest, Platform: map[string]string{"os": os, "architecture": arch}})
			}
			ib := oddJSON(ji)
			im.Top = blob{Digest: digestOf(ib), Size: int64(len(ib)), MediaType: iMT}
			if err := p.putManifest(ctx, r.name, im.Tag, iMT, ib); err != nil {
				return err
			}
		} else {
			im.Top = im.Manif[0].blob
		}
		set.Images = append(set.Images, im)
		if len(set.Images)%max(logEvery, 1) != 0 && len(set.Images) != len(plan) {
			continue
		}
		logf("generated %s (%d platform(s)); %.0f MiB of layers so far in %s", r.name, len(im.Manif), float64(generated)/mib, time.Since(start).Round(time.Second))
	}
	set.tally()
	return nil
}

// sourceSet returns the cached set for seed and scale, generating it into a
// cache directory (registry storage plus set.json) the first time.
func cachedSetDir(outDir string, seed uint64, scale float64, bigMiB int) string {
	return filepath.Join(outDir, "cache", fmt.Sprintf("src-%s-seed%d-scale%g-big%d", planVersion, seed, scale, bigMiB))
}

func loadSet(dir string) (*imageSet, error) {
	b, err := os.ReadFile(filepath.Join(dir, "set.json"))
	if err != nil {
		return nil, err
	}
	var s imageSet
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

func saveSet(dir string, s *imageSet) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, "set.json.tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, "set.json"))
}

// refs returns every image reference on host, in set order.
func (s *imageSet) refs(host string) []string {
	var out []string
	for _, im := range s.Images {
		out = append(out, host+"/"+im.Name+":"+im.Tag)
	}
	return out
}

// releaseYAML names every image of the set as a Deployment would.
func (s *imageSet) releaseYAML(host string) []byte {
	var b strings.Builder
	for i, im := range s.Images {
		if i > 0 {
			b.WriteString("---\n")
		}
		n := strings.TrimPrefix(im.Name, "src/")
		fmt.Fprintf(&b, `apiVersion: apps/v1
kind: Deployment
metadata:
  name: %s
spec:
  selector:
    matchLabels: {app: %s}
  template:
    metadata:
      labels: {app: %s}
    spec:
      containers:
      - name: %s
        image: %s/%s:%s
`, n, n, n, n, host, im.Name, im.Tag)
	}
	return []byte(b.String())
}

// lockYAML is ferry's lock for the set, written by the harness when
// `ferry resolve` is not available, so pkg and relocate can still run.
func (s *imageSet) lockYAML(host string) []byte {
	var b strings.Builder
	b.WriteString("apiVersion: ferry.dev/v1alpha1\nkind: ImagesLock\nimages:\n")
	for _, im := range s.Images {
		fmt.Fprintf(&b, "- image: %s/%s:%s\n  digest: %s\n  mediaType: %s\n  size: %d\n  resolved: %s/%s@%s\n",
			host, im.Name, im.Tag, im.Top.Digest, im.Top.MediaType, im.Top.Size, host, im.Name, im.Top.Digest)
		if im.IsIndex {
			b.WriteString("  platforms:\n")
			for _, m := range im.Manif {
				fmt.Fprintf(&b, "  - platform: %s\n    digest: %s\n    mediaType: %s\n    size: %d\n", m.Platform, m.Digest, m.MediaType, m.Size)
			}
		}
	}
	return []byte(b.String())
}
