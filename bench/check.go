package main

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// artifact is what a tool produced, seen by the digest check: a layout, a
// set of directories, or a registry.
type artifact interface {
	// top returns the bytes stored for the image's own reference.
	top(i int, im image) ([]byte, error)
	// manifest returns the bytes stored under digest d.
	manifest(i int, im image, d string) ([]byte, error)
	// blobSize reports the size of the blob stored under digest d.
	blobSize(i int, im image, d string) (int64, error)
}

var errMissing = errors.New("missing")

// checkResult says whether every digest survived.
type checkResult struct {
	Digests      int // top-level and child manifests checked
	Changed      int // present under the image's name, but with other bytes
	Missing      int // manifests not found at all
	BlobsMissing int // configs and layers absent or of the wrong size
	Notes        []string
}

func (c checkResult) ok() bool { return c.Changed == 0 && c.Missing == 0 && c.BlobsMissing == 0 }

func (c checkResult) String() string {
	if c.ok() {
		return fmt.Sprintf("yes (%d/%d)", c.Digests, c.Digests)
	}
	var parts []string
	if c.Changed > 0 {
		parts = append(parts, fmt.Sprintf("%d changed", c.Changed))
	}
	if c.Missing > 0 {
		parts = append(parts, fmt.Sprintf("%d missing", c.Missing))
	}
	if c.BlobsMissing > 0 {
		parts = append(parts, fmt.Sprintf("%d blobs missing", c.BlobsMissing))
	}
	return fmt.Sprintf("**NO**: %s of %d", strings.Join(parts, ", "), c.Digests)
}

// check compares every manifest digest (top level and children) and every
// blob the source holds with what the artifact holds.
func check(set *imageSet, a artifact) checkResult {
	var r checkResult
	note := func(f string, args ...any) {
		if len(r.Notes) < 6 {
			r.Notes = append(r.Notes, fmt.Sprintf(f, args...))
		}
	}
	for i, im := range set.Images {
		r.Digests++
		b, err := a.top(i, im)
		topChanged := false
		switch {
		case err != nil:
			r.Missing++
			note("%s: %v", im.Name, err)
		case digestOf(b) != im.Top.Digest:
			r.Changed++
			topChanged = true
			note("%s: %s became %s", im.Name, short(im.Top.Digest), short(digestOf(b)))
		}
		if !im.IsIndex {
			if err == nil && !topChanged {
				checkBlobs(&r, a, i, im, im.Manif[0], note)
			}
			continue
		}
		for _, m := range im.Manif {
			r.Digests++
			b, err := a.manifest(i, im, m.Digest)
			switch {
			case err != nil && topChanged:
				r.Changed++ // converted along with its index
			case err != nil:
				r.Missing++
				note("%s %s: %v", im.Name, m.Platform, err)
			case digestOf(b) != m.Digest:
				r.Changed++
				note("%s %s: stored bytes hash to %s", im.Name, m.Platform, short(digestOf(b)))
			default:
				checkBlobs(&r, a, i, im, m, note)
			}
		}
	}
	return r
}

func checkBlobs(r *checkResult, a artifact, i int, im image, m manifest, note func(string, ...any)) {
	for _, bl := range append([]blob{m.Config}, m.Layers...) {
		n, err := a.blobSize(i, im, bl.Digest)
		if err != nil || n != bl.Size {
			r.BlobsMissing++
			note("%s %s: blob %s: size %d, err %v", im.Name, m.Platform, short(bl.Digest), n, err)
		}
	}
}

func short(d string) string {
	if len(d) > 19 {
		return d[:19]
	}
	return d
}

func hexOf(d string) string { return strings.TrimPrefix(d, "sha256:") }

// layoutIndex is the part of index.json the check reads.
type layoutIndex struct {
	Manifests []struct {
		Digest      string            `json:"digest"`
		Annotations map[string]string `json:"annotations"`
	} `json:"manifests"`
}

// topDigest finds the entry for an image: by its ref name, else by digest.
func (x *layoutIndex) topDigest(ref, want string) (string, error) {
	for _, m := range x.Manifests {
		if m.Annotations["org.opencontainers.image.ref.name"] == ref {
			return m.Digest, nil
		}
	}
	for _, m := range x.Manifests {
		if m.Digest == want {
			return m.Digest, nil
		}
	}
	return "", fmt.Errorf("no index.json entry named %q: %w", ref, errMissing)
}

// dirLayout is an OCI image layout directory.
type dirLayout struct {
	dir   string
	index layoutIndex
	ref   func(image) string
}

func openDirLayout(dir string, ref func(image) string) (artifact, error) {
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		return nil, err
	}
	l := &dirLayout{dir: dir, ref: ref}
	return l, json.Unmarshal(b, &l.index)
}

func (l *dirLayout) top(i int, im image) ([]byte, error) {
	d, err := l.index.topDigest(l.ref(im), im.Top.Digest)
	if err != nil {
		return nil, err
	}
	return l.manifest(i, im, d)
}

func (l *dirLayout) manifest(_ int, _ image, d string) ([]byte, error) {
	return os.ReadFile(filepath.Join(l.dir, "blobs", "sha256", hexOf(d)))
}

func (l *dirLayout) blobSize(_ int, _ image, d string) (int64, error) {
	fi, err := os.Stat(filepath.Join(l.dir, "blobs", "sha256", hexOf(d)))
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// tarLayout is an OCI layout inside a tar (ferry's bundle): the headers are
// indexed once; small entries (manifests, configs, index.json) are kept.
type tarLayout struct {
	sizes map[string]int64
	small map[string][]byte
	index layoutIndex
	ref   func(image) string
}

func openTarLayout(file string, ref func(image) string) (artifact, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	t := &tarLayout{sizes: map[string]int64{}, small: map[string][]byte{}, ref: ref}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", file, err)
		}
		name := strings.TrimPrefix(path.Clean(h.Name), "./")
		t.sizes[name] = h.Size
		if h.Size <= 4<<20 && h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				return nil, err
			}
			t.small[name] = b
		}
	}
	b, ok := t.small["index.json"]
	if !ok {
		return nil, fmt.Errorf("%s has no index.json", file)
	}
	return t, json.Unmarshal(b, &t.index)
}

func (t *tarLayout) top(i int, im image) ([]byte, error) {
	d, err := t.index.topDigest(t.ref(im), im.Top.Digest)
	if err != nil {
		return nil, err
	}
	return t.manifest(i, im, d)
}

func (t *tarLayout) manifest(_ int, _ image, d string) ([]byte, error) {
	b, ok := t.small["blobs/sha256/"+hexOf(d)]
	if !ok {
		return nil, errMissing
	}
	return b, nil
}

func (t *tarLayout) blobSize(_ int, _ image, d string) (int64, error) {
	n, ok := t.sizes["blobs/sha256/"+hexOf(d)]
	if !ok {
		return 0, errMissing
	}
	return n, nil
}

// skopeoDirs is skopeo's dir: transport, one directory per image (named by
// its index in the set): manifest.json, <hex>.manifest.json per instance, and
// blobs as <hex>.
type skopeoDirs struct{ root string }

func openSkopeoDirs(root string) artifact { return skopeoDirs{root} }

func (s skopeoDirs) dir(i int) string { return filepath.Join(s.root, fmt.Sprint(i)) }

func (s skopeoDirs) top(i int, _ image) ([]byte, error) {
	return os.ReadFile(filepath.Join(s.dir(i), "manifest.json"))
}

func (s skopeoDirs) manifest(i int, _ image, d string) ([]byte, error) {
	return os.ReadFile(filepath.Join(s.dir(i), hexOf(d)+".manifest.json"))
}

func (s skopeoDirs) blobSize(i int, _ image, d string) (int64, error) {
	fi, err := os.Stat(filepath.Join(s.dir(i), hexOf(d)))
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// registryArtifact is a target registry; images are at REG/bench/<name>, or
// where ferry's lock-output says.
type registryArtifact struct {
	ctx    context.Context
	host   string
	client *http.Client
	repo   func(image) string
}

const acceptAll = mtOCIIndex + ", " + mtOCIManifest + ", " + mtDockerList + ", " + mtDockerManifest

func (r registryArtifact) get(ctx context.Context, method, u string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", acceptAll)
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("%s %s: %s: %w", method, u, resp.Status, errMissing)
	}
	return resp, nil
}

func (r registryArtifact) read(u string) ([]byte, error) {
	resp, err := r.get(r.ctx, http.MethodGet, u)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(io.LimitReader(resp.Body, 8<<20))
}

// top reads the image by its tag, or by digest where a tool pushed no tag.
func (r registryArtifact) top(_ int, im image) ([]byte, error) {
	b, err := r.read("http://" + r.host + "/v2/" + r.repo(im) + "/manifests/" + im.Tag)
	if errors.Is(err, errMissing) {
		return r.read("http://" + r.host + "/v2/" + r.repo(im) + "/manifests/" + im.Top.Digest)
	}
	return b, err
}

func (r registryArtifact) manifest(_ int, im image, d string) ([]byte, error) {
	return r.read("http://" + r.host + "/v2/" + r.repo(im) + "/manifests/" + d)
}

func (r registryArtifact) blobSize(_ int, im image, d string) (int64, error) {
	resp, err := r.get(r.ctx, http.MethodHead, "http://"+r.host+"/v2/"+r.repo(im)+"/blobs/"+d)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.ContentLength, nil
}
