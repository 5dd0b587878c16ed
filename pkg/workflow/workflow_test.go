package workflow

import (
	"context"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ferry-dev/ferry/pkg/access"
	"github.com/ferry-dev/ferry/pkg/bundle"
	"github.com/ferry-dev/ferry/pkg/destination"
	"github.com/ferry-dev/ferry/pkg/lock"
	"github.com/ferry-dev/ferry/pkg/progress"
	"github.com/ferry-dev/ferry/pkg/transfer"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// memRegistry starts an in-memory registry and returns its host.
func memRegistry(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	return u.Host
}

// pushed pushes two images sharing a base layer and returns their lock.
func pushed(t *testing.T, host string) *lock.File {
	t.Helper()
	base, err := random.Image(2048, 1)
	if err != nil {
		t.Fatal(err)
	}
	lf := lock.New()
	for _, repo := range []string{"team/api", "team/web"} {
		top, _ := random.Image(1024, 1)
		layers, _ := top.Layers()
		img, err := mutate.AppendLayers(base, layers...)
		if err != nil {
			t.Fatal(err)
		}
		ref, _ := name.ParseReference(host+"/"+repo+":v1", name.Insecure)
		if err := remote.Write(ref, img); err != nil {
			t.Fatal(err)
		}
		d, _ := img.Digest()
		mt, _ := img.MediaType()
		raw, _ := img.RawManifest()
		lf.Images = append(lf.Images, lock.Image{Image: ref.String(), Digest: d.String(), MediaType: string(mt), Size: int64(len(raw)), Resolved: host + "/" + repo + "@" + d.String()})
	}
	return lf
}

func client(t *testing.T, hosts ...string) *access.Client {
	t.Helper()
	c, err := access.New(access.Options{InsecureHosts: hosts, Jobs: 4})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestPkgResult(t *testing.T) {
	ctx := context.Background()
	src := memRegistry(t)
	lf := pushed(t, src)
	c := client(t, src)
	path := filepath.Join(t.TempDir(), "bundle.tar")

	res, err := Pkg(ctx, c, lf, path, PkgOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Two manifests, two configs, the shared base layer and two own layers.
	if res.Bundle != path || len(res.Images) != 2 || res.Blobs != 7 || res.BlobsFetched != 5 || res.Bytes == 0 || res.Unchanged {
		t.Errorf("first run: %+v; want 2 images, 7 blobs stored, 5 blobs fetched (the manifests come with the walk)", res)
	}
	for i, im := range res.Images {
		if im.Image != lf.Images[i].Image || im.Digest != lf.Images[i].Digest || im.Size <= lf.Images[i].Size || len(im.Platforms) != 1 {
			t.Errorf("image %d: %+v; want %s by digest with its size and one platform", i, im, lf.Images[i].Image)
		}
	}

	again, err := Pkg(ctx, c, lf, path, PkgOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !again.Unchanged || again.Blobs != res.Blobs || again.Bytes != res.Bytes || again.BytesFetched != 0 || len(again.Images) != 2 {
		t.Errorf("second run: %+v; want unchanged with the same blobs and bytes", again)
	}
}

func TestRelocateResult(t *testing.T) {
	ctx := context.Background()
	src, dst := memRegistry(t), memRegistry(t)
	lf := pushed(t, src)
	c := client(t, src, dst)
	o := transfer.RelocateOptions{Repository: dst + "/mirror", Layout: destination.LayoutPath}
	out, res, err := Relocate(ctx, c, lf, RelocateOptions{RelocateOptions: o, SupplyChain: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Repository != dst+"/mirror" || len(res.Images) != 2 || res.ManifestsPushed != 2 || res.TagsPushed != 2 || res.BlobsUploaded+res.BlobsMounted != 6 {
		t.Errorf("result %+v; want 2 images, 2 manifests, 2 tags, 6 blobs placed", res)
	}
	for i, im := range res.Images {
		if im.Relocated == "" || im.Relocated != out.Images[i].Relocated {
			t.Errorf("image %d relocated to %q, lock says %q", i, im.Relocated, out.Images[i].Relocated)
		}
	}
	_, again, err := Relocate(ctx, c, out, RelocateOptions{RelocateOptions: o, SupplyChain: true})
	if err != nil {
		t.Fatal(err)
	}
	if again.BlobsUploaded != 0 || again.BlobsMounted != 0 || again.ManifestsPresent != 2 || again.TagsPresent != 2 {
		t.Errorf("rerun %+v; want everything already present", again)
	}

	vr, err := VerifyLock(ctx, c, writeLock(t, out))
	if err != nil || !vr.OK || vr.Images != 2 {
		t.Errorf("VerifyLock: %+v, %v; want ok", vr, err)
	}
}

func writeLock(t *testing.T, lf *lock.File) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "l.yaml")
	if err := lf.Write(p, lock.FormatFerry); err != nil {
		t.Fatal(err)
	}
	return p
}

// cancelOnAdd cancels the run once bytes start to move.
type cancelOnAdd struct {
	progress.Nop
	cancel context.CancelFunc
}

func (c cancelOnAdd) Add(int64) { c.cancel() }

func TestPkgSplit(t *testing.T) {
	var requests atomic.Int64
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	src := strings.TrimPrefix(srv.URL, "http://")
	base, err := random.Image(2<<20, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := name.ParseReference(src+"/team/big:v1", name.Insecure)
	if err := remote.Write(ref, base); err != nil {
		t.Fatal(err)
	}
	d, _ := base.Digest()
	mt, _ := base.MediaType()
	raw, _ := base.RawManifest()
	lf := lock.New()
	lf.Images = append(lf.Images, lock.Image{Image: ref.String(), Digest: d.String(), MediaType: string(mt), Size: int64(len(raw)), Resolved: src + "/team/big@" + d.String()})
	c := client(t, src)
	path := filepath.Join(t.TempDir(), "bundle.tar")
	o := PkgOptions{SplitSize: bundle.MinSplitSize}

	ctx, cancel := context.WithCancel(t.Context())
	_, err = Pkg(ctx, c, lf, path, PkgOptions{SplitSize: o.SplitSize, Progress: cancelOnAdd{cancel: cancel}})
	if !errors.Is(err, ErrInterrupted) || !strings.Contains(err.Error(), "the hidden files "+filepath.Join(filepath.Dir(path), ".bundle.tar.*")) {
		t.Errorf("interrupted: err = %v, want ErrInterrupted naming the hidden files", err)
	}

	res, err := Pkg(t.Context(), c, lf, path, o)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{bundle.PartPath(path, 1), bundle.PartPath(path, 2), bundle.PartPath(path, 3)}
	if !cmp.Equal(res.Parts, want) || res.PartsFile != bundle.PartsPath(path) || res.Unchanged || len(res.Images) != 1 {
		t.Errorf("split: %+v; want parts %v listed in %s", res, want, bundle.PartsPath(path))
	}
	before := requests.Load()
	again, err := Pkg(t.Context(), c, lf, path, o)
	if err != nil || !again.Unchanged || !cmp.Equal(again.Parts, want) || again.Bytes != res.Bytes {
		t.Errorf("rerun: %+v, %v; want unchanged with the same parts", again, err)
	}
	if n := requests.Load() - before; n != 0 {
		t.Errorf("rerun over the complete split asked the registry %d times, want none", n)
	}
	// Another part size, or no split, is not the bundle already there.
	other, err := Pkg(t.Context(), c, lf, path, PkgOptions{SplitSize: 2 * bundle.MinSplitSize})
	if err != nil || other.Unchanged || len(other.Parts) != 2 {
		t.Errorf("another part size: %+v, %v; want two new parts", other, err)
	}
	if _, err := os.Stat(bundle.PartPath(path, 3)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the old third part is still there (%v)", err)
	}
	plain, err := Pkg(t.Context(), c, lf, path, PkgOptions{})
	if err != nil || plain.Unchanged || plain.Parts != nil {
		t.Errorf("unsplit over split parts: %+v, %v; want a bundle written at %s", plain, err, path)
	}
	if st, err := os.Stat(path); err != nil || st.Size() != res.Bytes {
		t.Errorf("unsplit bundle: %v, %v; want %d bytes", st, err, res.Bytes)
	}
}
