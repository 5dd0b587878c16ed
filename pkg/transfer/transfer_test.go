package transfer

import (
	"bytes"
	"context"
	"errors"
	"github.com/ferry-dev/ferry/pkg/fanout"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/pkg/destination"
	"github.com/ferry-dev/ferry/pkg/graph"
	"github.com/ferry-dev/ferry/pkg/lock"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// sharedSet is three images in three repositories sharing two base
// layers, plus an index of two platforms in a fourth.
type sharedSet struct {
	src    *memFetcher
	images []Image
	// unique blobs, and blobs counted per repository.
	unique, perRepo int
	uniqueBytes     int64
	perRepoBytes    int64
}

func newSharedSet(t *testing.T, reg *testRegistry) sharedSet {
	t.Helper()
	src := newMemFetcher()
	base1, base2 := bytesOf("base-one ", 40<<10), bytesOf("base-two ", 70<<10)
	var s sharedSet
	s.src = src
	for _, app := range []string{"api", "web", "cli"} {
		d := src.image(t, "amd64", base1, base2, bytesOf("app "+app+" ", 10<<10))
		s.images = append(s.images, Image{Name: "example.com/team/" + app + ":v1", Root: src.walk(t, d), From: src, To: reg.repo("mirror/team/" + app), Tag: "v1"})
	}
	idx := src.index(src.image(t, "amd64", base1, bytesOf("x86 ", 5<<10)), src.image(t, "arm64", base1, bytesOf("arm ", 5<<10)))
	s.images = append(s.images, Image{Name: "example.com/multi:v2", Root: src.walk(t, idx), From: src, To: reg.repo("mirror/multi"), Tag: "v2"})

	seen := map[v1.Hash]bool{}
	for _, im := range s.images {
		for _, b := range im.Root.AllBlobs() {
			s.perRepo++
			s.perRepoBytes += b.Size
			if !seen[b.Digest] {
				seen[b.Digest] = true
				s.unique++
				s.uniqueBytes += b.Size
			}
		}
	}
	return s
}

func TestPushUploadsEachBlobOnceAndMounts(t *testing.T) {
	reg := newTestRegistry(t)
	s := newSharedSet(t, reg)
	ctx := context.Background()

	got, err := Push(ctx, reg.client(t), s.images, Options{Jobs: 4})
	if err != nil {
		t.Fatal(err)
	}
	reqs := reg.requests()
	want := Result{
		Images:          4,
		BlobsUploaded:   s.unique,
		BlobsMounted:    s.perRepo - s.unique,
		BytesUploaded:   s.uniqueBytes,
		BytesMounted:    s.perRepoBytes - s.uniqueBytes,
		ManifestsPushed: 3 + 3, // three images; an index and its two children
		TagsPushed:      4,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("first push (-want +got):\n%s", diff)
	}
	if n := count(reqs, "PUT", "/blobs/uploads/"); n != s.unique {
		t.Errorf("%d blob uploads, want %d (one per unique blob)", n, s.unique)
	}
	// Every (repository, blob) pair costs one POST asking for a mount:
	// from the repository itself until one holds the blob (the answer
	// says whether it does), then from that one. No HEAD first.
	if n := count(reqs, "POST", "?mount"); n != s.perRepo {
		t.Errorf("%d POSTs with a mount, want %d (one per repository and blob)", n, s.perRepo)
	}
	if n := count(reqs, "HEAD", "/blobs/"); n != 0 {
		t.Errorf("a first push sent %d blob HEADs, want none", n)
	}
	// One HEAD per image, of its root (by tag); an index's children are
	// put without asking.
	if n := count(reqs, "HEAD", "/manifests/"); n != len(s.images) {
		t.Errorf("a first push sent %d manifest HEADs, want %d (one per root)", n, len(s.images))
	}
	for d, n := range s.src.served {
		if n != 1 {
			t.Errorf("blob %s read %d times from the source, want once", d, n)
		}
	}

	// Every manifest is in its repository byte for byte, children too,
	// and the tags point at the roots.
	for _, im := range s.images {
		repo := im.To.RepositoryStr()
		for _, m := range im.Root.Manifests() {
			raw, ct := reg.raw(t, repo, m.Desc.Digest.String())
			if !bytes.Equal(raw, m.Raw) {
				t.Errorf("%s@%s: served bytes differ from the source", repo, m.Desc.Digest)
			}
			if ct != string(m.Desc.MediaType) {
				t.Errorf("%s@%s: content type %q, want %q", repo, m.Desc.Digest, ct, m.Desc.MediaType)
			}
			for _, b := range m.Blobs {
				if !reg.blobs.has(repo, b.Digest.String()) {
					t.Errorf("%s lacks blob %s", repo, b.Digest)
				}
			}
		}
		if raw, _ := reg.raw(t, repo, im.Tag); !bytes.Equal(raw, im.Root.Raw) {
			t.Errorf("%s:%s does not serve the root manifest", repo, im.Tag)
		}
	}

	// Manifests go children first, and only after the blobs.
	t.Run("order", func(t *testing.T) {
		reg2 := newTestRegistry(t)
		s2 := newSharedSet(t, reg2)
		multi := s2.images[3]
		if _, err := Push(ctx, reg2.client(t), []Image{multi}, Options{Jobs: 1}); err != nil {
			t.Fatal(err)
		}
		var puts []string
		lastBlob, firstManifest := -1, -1
		for i, r := range reg2.requests() {
			switch {
			case strings.HasPrefix(r, "PUT ") && strings.Contains(r, "/manifests/"):
				puts = append(puts, r[strings.LastIndex(r, "/")+1:])
				if firstManifest < 0 {
					firstManifest = i
				}
			case strings.Contains(r, "/blobs/uploads/") && r[:4] != "HEAD":
				lastBlob = i
			}
		}
		// The root, absent by digest, goes up by its tag in one PUT.
		want := []string{multi.Root.Children[0].Desc.Digest.String(), multi.Root.Children[1].Desc.Digest.String(), "v2"}
		if diff := cmp.Diff(want, puts); diff != "" {
			t.Errorf("manifest PUT order (-want +got):\n%s", diff)
		}
		if lastBlob > firstManifest {
			t.Errorf("a blob request (#%d) came after the first manifest PUT (#%d)", lastBlob, firstManifest)
		}
	})

	// A second push finds everything and sends nothing.
	again, err := Push(ctx, reg.client(t), s.images, Options{Jobs: 4})
	if err != nil {
		t.Fatal(err)
	}
	want = Result{Images: 4, BlobsSkipped: s.perRepo, BytesSkipped: s.perRepoBytes, ManifestsSkipped: 6, TagsSkipped: 4}
	if diff := cmp.Diff(want, again); diff != "" {
		t.Errorf("second push (-want +got):\n%s", diff)
	}
	var heads int
	for _, r := range reg.requests() {
		if !strings.HasPrefix(r, "HEAD ") && !strings.HasPrefix(r, "GET /v2/") {
			t.Errorf("second push sent %s", r)
		}
		if strings.HasPrefix(r, "HEAD ") {
			heads++
			if strings.Contains(r, "/blobs/") {
				t.Errorf("second push asked for a blob of an image already there: %s", r)
			}
		}
	}
	// One HEAD per image, by its tag: the answer names the digest.
	if heads != 4 {
		t.Errorf("second push made %d HEAD requests, want 4 (one per image, by tag)", heads)
	}
}

func TestPushFallsBackWhenMountRefused(t *testing.T) {
	reg := newTestRegistry(t)
	reg.refuseMounts = true
	s := newSharedSet(t, reg)
	got, err := Push(context.Background(), reg.client(t), s.images, Options{Jobs: 3})
	if err != nil {
		t.Fatal(err)
	}
	if got.BlobsUploaded != s.perRepo || got.BlobsMounted != 0 || got.BytesUploaded != s.perRepoBytes {
		t.Errorf("uploaded %d (%d bytes), mounted %d; want %d (%d bytes) uploaded, none mounted",
			got.BlobsUploaded, got.BytesUploaded, got.BlobsMounted, s.perRepo, s.perRepoBytes)
	}
	for _, im := range s.images {
		for _, b := range im.Root.AllBlobs() {
			if !reg.blobs.has(im.To.RepositoryStr(), b.Digest.String()) {
				t.Errorf("%s lacks %s", im.To.RepositoryStr(), b.Digest)
			}
		}
	}
}

func TestPushFindsBlobsLeftByAnInterruptedRun(t *testing.T) {
	// A run killed during the uploads leaves blobs in the repository but
	// no manifest: the next run's mount from the repository itself finds
	// them (201) and uploads only the rest, without a HEAD per blob.
	reg := newTestRegistry(t)
	s := newSharedSet(t, reg)
	im := s.images[0]
	repo := im.To.RepositoryStr()
	left := im.Root.Blobs[1:3] // the two base layers
	for _, b := range left {
		if err := reg.blobs.Put(context.Background(), repo, b.Digest, io.NopCloser(bytes.NewReader(s.src.m[b.Digest]))); err != nil {
			t.Fatal(err)
		}
	}
	got, err := Push(context.Background(), reg.client(t), []Image{im}, Options{Jobs: 2})
	if err != nil {
		t.Fatal(err)
	}
	if got.BlobsUploaded != 2 || got.BlobsSkipped != 2 || got.BytesSkipped != left[0].Size+left[1].Size {
		t.Errorf("uploaded %d, skipped %d (%d bytes); want 2 uploaded, the 2 left behind skipped", got.BlobsUploaded, got.BlobsSkipped, got.BytesSkipped)
	}
	reqs := reg.requests()
	if n := count(reqs, "PUT", "/blobs/uploads/"); n != 2 {
		t.Errorf("%d blob uploads, want 2", n)
	}
	if n := count(reqs, "HEAD", "/blobs/"); n != 0 {
		t.Errorf("%d blob HEADs, want none", n)
	}
}

func TestPushAsksBeforeUploadingWhereMountsAreDeclined(t *testing.T) {
	// Once a registry answers a mount from a repository that holds the
	// blob with an upload session, it does not mount: from then on each
	// blob is looked for with a HEAD before its bytes are sent.
	reg := newTestRegistry(t)
	reg.refuseMounts = true
	s := newSharedSet(t, reg)
	cli := s.images[2]
	own := cli.Root.Blobs[3] // the cli layer, smaller than the base layers pushed first
	if err := reg.blobs.Put(context.Background(), cli.To.RepositoryStr(), own.Digest, io.NopCloser(bytes.NewReader(s.src.m[own.Digest]))); err != nil {
		t.Fatal(err)
	}
	got, err := Push(context.Background(), reg.client(t), s.images[:3], Options{Limits: serial})
	if err != nil {
		t.Fatal(err)
	}
	if got.BlobsSkipped != 1 || got.BlobsMounted != 0 {
		t.Errorf("skipped %d, mounted %d; want the cli layer found, nothing mounted", got.BlobsSkipped, got.BlobsMounted)
	}
	if n := count(reg.requests(), "PUT", "/blobs/uploads/"); n != got.BlobsUploaded {
		t.Errorf("%d blob uploads, result says %d", n, got.BlobsUploaded)
	}
	if reg.blobs.has(cli.To.RepositoryStr(), own.Digest.String()) == false {
		t.Error("the cli layer is gone")
	}
}

func TestPushUploadsWhereAMountIsAnError(t *testing.T) {
	// The spec asks for an upload session where a mount cannot be done;
	// a registry that answers with an error instead still gets the blob.
	reg := newTestRegistry(t)
	s := newSharedSet(t, reg)
	reg.intercept = func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodPost && r.URL.Query().Get("mount") != "" {
			w.WriteHeader(http.StatusNotFound)
			return true
		}
		return false
	}
	got, err := Push(context.Background(), reg.client(t), s.images[:1], Options{Jobs: 1})
	if err != nil {
		t.Fatal(err)
	}
	if got.BlobsUploaded != 4 || got.ManifestsPushed != 1 {
		t.Errorf("result %+v: want 4 blobs uploaded and the manifest pushed", got)
	}
}

func TestPushMountsFromARepositoryThatHasIt(t *testing.T) {
	// After a first push of one image, a second push of another sharing
	// its base mounts the base from there instead of uploading it.
	reg := newTestRegistry(t)
	s := newSharedSet(t, reg)
	ctx := context.Background()
	if _, err := Push(ctx, reg.client(t), s.images[:1], Options{}); err != nil {
		t.Fatal(err)
	}
	got, err := Push(ctx, reg.client(t), s.images[:2], Options{})
	if err != nil {
		t.Fatal(err)
	}
	// team/web needs the config (identical: same arch), two base layers
	// from team/api, and its own layer.
	if got.BlobsUploaded != 1 || got.BlobsMounted != 3 || got.BlobsSkipped != 4 {
		t.Errorf("uploaded %d, mounted %d, skipped %d; want 1, 3, 4", got.BlobsUploaded, got.BlobsMounted, got.BlobsSkipped)
	}
}

func TestPushRefusesTamperedBlob(t *testing.T) {
	reg := newTestRegistry(t)
	s := newSharedSet(t, reg)
	im := s.images[0]
	bad := im.Root.Blobs[2] // the second base layer
	good := s.src.m[bad.Digest]
	s.src.tamper[bad.Digest] = append(append([]byte(nil), good[:len(good)-1]...), 'X')

	_, err := Push(context.Background(), reg.client(t), []Image{im}, Options{})
	if !errors.Is(err, graph.ErrDigestMismatch) {
		t.Fatalf("err = %v, want ErrDigestMismatch", err)
	}
	for _, want := range []string{bad.Digest.String(), im.Name} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if reg.blobs.has(im.To.RepositoryStr(), bad.Digest.String()) {
		t.Error("the tampered blob landed in the registry")
	}
	if raw, _ := reg.raw(t, im.To.RepositoryStr(), im.Root.Desc.Digest.String()); raw != nil {
		t.Error("the manifest was pushed although a blob failed")
	}
}

func TestPushSkipsTagAlreadyRight(t *testing.T) {
	// An immutable-tag registry refuses any PUT to an existing tag.
	reg := newTestRegistry(t)
	s := newSharedSet(t, reg)
	ctx := context.Background()
	if _, err := Push(ctx, reg.client(t), s.images, Options{}); err != nil {
		t.Fatal(err)
	}
	reg.intercept = func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/") && !strings.Contains(r.URL.Path, "sha256:") {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"errors":[{"code":"TAG_INVALID","message":"tag is immutable"}]}`))
			return true
		}
		return false
	}
	got, err := Push(ctx, reg.client(t), s.images, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got.TagsSkipped != 4 || got.TagsPushed != 0 {
		t.Errorf("tags pushed %d, skipped %d; want 0, 4", got.TagsPushed, got.TagsSkipped)
	}
}

func TestPushTagMissingOrMoved(t *testing.T) {
	// The root is asked for by its tag. A missing tag is taken to mean a
	// missing image; where the image is there all the same (pushed by
	// digest by another tool), its blobs answer their mounts with 201 and
	// no byte is sent again. A tag naming another image is followed by a
	// HEAD of the digest.
	reg := newTestRegistry(t)
	s := newSharedSet(t, reg)
	ctx := context.Background()
	byDigest := make([]Image, len(s.images))
	for i, im := range s.images {
		im.Tag = ""
		byDigest[i] = im
	}
	if _, err := Push(ctx, reg.client(t), byDigest, Options{}); err != nil {
		t.Fatal(err)
	}
	reg.requests()
	got, err := Push(ctx, reg.client(t), s.images, Options{})
	if err != nil {
		t.Fatal(err)
	}
	// A blob found in one repository is mounted into the others from
	// there: 201 whether they held it or not.
	if got.BlobsUploaded != 0 || got.BlobsMounted+got.BlobsSkipped != s.perRepo || got.TagsPushed != 4 {
		t.Errorf("result %+v: want every blob found or mounted, nothing uploaded, 4 tags pushed", got)
	}
	if n := count(reg.requests(), "PUT", "/blobs/uploads/"); n != 0 {
		t.Errorf("%d blob uploads, want none", n)
	}

	// Move api's tag onto web's image: api is there by digest, its tag
	// is put back.
	api, web := s.images[0], s.images[1]
	if _, err := Push(ctx, reg.client(t), []Image{{Name: "moved", Root: web.Root, From: s.src, To: api.To, Tag: api.Tag}}, Options{}); err != nil {
		t.Fatal(err)
	}
	reg.requests()
	got, err = Push(ctx, reg.client(t), []Image{api}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got.TagsPushed != 1 || got.BlobsSkipped != 4 || got.ManifestsSkipped != 1 {
		t.Errorf("result %+v: want the image found by digest and its tag pushed", got)
	}
	if raw, _ := reg.raw(t, api.To.RepositoryStr(), api.Tag); !bytes.Equal(raw, api.Root.Raw) {
		t.Errorf("%s:%s does not serve the root manifest", api.To.RepositoryStr(), api.Tag)
	}
	if n := count(reg.requests(), "POST", "/blobs/"); n != 0 {
		t.Errorf("%d blob POSTs for an image there by digest, want none", n)
	}
}

func TestPushNoticesChangedDigest(t *testing.T) {
	reg := newTestRegistry(t)
	s := newSharedSet(t, reg)
	reg.intercept = func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/") {
			w.Header().Set("Docker-Content-Digest", "sha256:"+strings.Repeat("0", 64))
			w.WriteHeader(http.StatusCreated)
			return true
		}
		return false
	}
	_, err := Push(context.Background(), reg.client(t), s.images[:1], Options{})
	if !errors.Is(err, ErrDigestChanged) {
		t.Fatalf("err = %v, want ErrDigestChanged", err)
	}
}

func TestPushRetriesTransientErrors(t *testing.T) {
	defer func(b []time.Duration) { backoff = b }(backoff)
	backoff = []time.Duration{time.Millisecond, time.Millisecond, time.Millisecond}

	reg := newTestRegistry(t)
	s := newSharedSet(t, reg)
	var failures atomic.Int32
	reg.intercept = func(w http.ResponseWriter, r *http.Request) bool {
		// Every first attempt at an upload PUT and a manifest PUT fails.
		if r.Method == http.MethodPut && failures.Add(1)%2 == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return true
		}
		return false
	}
	got, err := Push(context.Background(), reg.client(t), s.images[:1], Options{Jobs: 1})
	if err != nil {
		t.Fatal(err)
	}
	if got.BlobsUploaded != 4 || got.ManifestsPushed != 1 || got.TagsPushed != 1 {
		t.Errorf("result %+v", got)
	}

	t.Run("permanent errors are not retried", func(t *testing.T) {
		var puts atomic.Int32
		reg.intercept = func(w http.ResponseWriter, r *http.Request) bool {
			if r.Method == http.MethodPut {
				puts.Add(1)
				w.WriteHeader(http.StatusForbidden)
				return true
			}
			return false
		}
		_, err := Push(context.Background(), reg.client(t), s.images[1:2], Options{Limits: serial})
		if err == nil {
			t.Fatal("push succeeded against a registry refusing every PUT")
		}
		if puts.Load() != 1 {
			t.Errorf("%d PUTs, want 1: a 403 is not worth retrying", puts.Load())
		}
	})
}

func TestPushRegistryDown(t *testing.T) {
	reg := newTestRegistry(t)
	s := newSharedSet(t, reg)
	c := reg.client(t)
	reg.srv.Close()
	start := time.Now()
	_, err := Push(context.Background(), c, s.images, Options{})
	if err == nil {
		t.Fatal("push to a closed registry succeeded")
	}
	if !strings.Contains(err.Error(), reg.host) || !strings.Contains(err.Error(), s.images[0].Name) {
		t.Errorf("error %q names neither the registry nor the image", err)
	}
	// Six tries with full-jitter backoff wait at most 6.2s in all.
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("took %v to give up on a refused connection", d)
	}
}

func TestCheck(t *testing.T) {
	reg := newTestRegistry(t)
	s := newSharedSet(t, reg)
	ctx := context.Background()
	c := reg.client(t)
	if _, err := Push(ctx, c, s.images, Options{}); err != nil {
		t.Fatal(err)
	}
	f := lock.New()
	for _, im := range s.images {
		d := im.Root.Desc
		f.Images = append(f.Images, lock.Image{
			Image: im.Name, Digest: d.Digest.String(), MediaType: string(d.MediaType), Size: d.Size,
			Relocated: im.To.Name() + "@" + d.Digest.String(),
		})
	}
	if err := Check(ctx, c, f); err != nil {
		t.Fatalf("complete registry: %v", err)
	}

	multi := s.images[3]
	child := multi.Root.Children[1]
	gone := child.Blobs[1]
	reg.blobs.remove(multi.To.RepositoryStr(), gone.Digest.String())
	missing := s.images[0]
	f.Images = append(f.Images, lock.Image{Image: "example.com/missing:v1", Relocated: missing.To.Name() + "@sha256:" + strings.Repeat("e", 64)})

	err := Check(ctx, c, f)
	var ie *IncompleteError
	if !errors.As(err, &ie) {
		t.Fatalf("err = %v, want *IncompleteError", err)
	}
	want := []Missing{
		{Image: "example.com/missing:v1", Location: missing.To.Name() + "@sha256:" + strings.Repeat("e", 64), What: "manifest"},
		{Image: multi.Name, Location: multi.To.Name() + "@" + gone.Digest.String(), What: "blob"},
	}
	if diff := cmp.Diff(want, ie.Missing, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("missing (-want +got):\n%s", diff)
	}
}

func TestRelocate(t *testing.T) {
	reg := newTestRegistry(t)
	s := newSharedSet(t, reg)
	ctx := context.Background()
	var entries []Entry
	for i, src := range []string{"gcr.io/team/api", "quay.io/team/web"} {
		root := s.images[i].Root
		d := root.Desc.Digest.String()
		entries = append(entries, Entry{
			Image: lock.Image{Image: src + ":v1", Digest: d, MediaType: string(root.Desc.MediaType), Resolved: src + "@" + d},
			From:  s.src,
		})
	}
	out, res, err := Relocate(ctx, reg.client(t), entries, RelocateOptions{Repository: reg.host + "/mirror"})
	if err != nil {
		t.Fatal(err)
	}
	if res.TagsPushed != 2 || res.BlobsMounted != 3 {
		t.Errorf("result %+v: want 2 tags pushed and the config and base layers mounted", res)
	}
	var got []string
	for _, im := range out.Images {
		got = append(got, im.Relocated)
	}
	want := []string{
		reg.host + "/mirror/team/api@" + s.images[0].Root.Desc.Digest.String(),
		reg.host + "/mirror/team/web@" + s.images[1].Root.Desc.Digest.String(),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("relocated (-want +got):\n%s", diff)
	}
	if err := out.Validate(); err != nil {
		t.Errorf("relocated lock is invalid: %v", err)
	}
	if raw, _ := reg.raw(t, "mirror/team/web", "v1"); !bytes.Equal(raw, s.images[1].Root.Raw) {
		t.Error("mirror/team/web:v1 does not serve the source manifest")
	}

	t.Run("collision pushes nothing", func(t *testing.T) {
		reg.requests()
		entries[1].Image.Image = "quay.io/team/api:v1"
		entries[1].Image.Resolved = "quay.io/team/api@" + entries[1].Image.Digest
		_, _, err := Relocate(ctx, reg.client(t), entries, RelocateOptions{Repository: reg.host + "/other"})
		var ce *destination.CollisionError
		if !errors.As(err, &ce) {
			t.Fatalf("err = %v, want *destination.CollisionError", err)
		}
		if reqs := reg.requests(); len(reqs) != 0 {
			t.Errorf("requests sent before refusing: %v", reqs)
		}
		if _, _, err := Relocate(ctx, reg.client(t), entries, RelocateOptions{Repository: reg.host + "/other", Layout: destination.LayoutHost}); err != nil {
			t.Errorf("layout host: %v", err)
		}
	})
}

// serial runs a push one request at a time, for tests of what a run learns
// on the way (a registry that declines mounts, a refusal not retried).
var serial = fanout.Limits{Large: 1, All: 1}

// TestPushManifestsFollowTheirBlobs holds the upload of one image's own
// layer until another image's manifest arrives: an image goes up as soon
// as its repository holds its blobs, not after every blob of the run.
func TestPushManifestsFollowTheirBlobs(t *testing.T) {
	reg := newTestRegistry(t)
	s := newSharedSet(t, reg)
	cli := s.images[2]
	own := cli.Root.Blobs[3].Digest.String() // the cli layer, no other image's
	manifest := make(chan struct{})
	var once sync.Once
	var waited atomic.Bool
	reg.intercept = func(w http.ResponseWriter, r *http.Request) bool {
		switch {
		case r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/") && !strings.Contains(r.URL.Path, "/cli/"):
			once.Do(func() { close(manifest) })
		case r.Method == http.MethodPut && r.URL.Query().Get("digest") == own:
			select {
			case <-manifest:
			case <-time.After(5 * time.Second):
				waited.Store(true)
			}
		}
		return false
	}
	if _, err := Push(t.Context(), reg.client(t), s.images, Options{Jobs: 2}); err != nil {
		t.Fatal(err)
	}
	if waited.Load() {
		t.Error("no other image's manifest was pushed while the cli layer was held: manifests wait for every blob of the run")
	}
}

// TestPushMountsAtOnce checks that once one repository holds a blob, the
// other repositories that need it mount it concurrently rather than one
// after another: a base layer shared by a release's hundred images costs
// one round trip of wall time, not a hundred.
func TestPushMountsAtOnce(t *testing.T) {
	reg := newTestRegistry(t)
	s := newSharedSet(t, reg)
	base := s.images[0].Root.Blobs[1].Digest.String() // base1, in all four repositories
	var inFlight, peak atomic.Int32
	both := make(chan struct{})
	var once sync.Once
	reg.intercept = func(w http.ResponseWriter, r *http.Request) bool {
		q := r.URL.Query()
		if r.Method != http.MethodPost || q.Get("mount") != base || strings.Contains(r.URL.Path, "/v2/"+q.Get("from")+"/") {
			return false
		}
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		if n >= 2 {
			once.Do(func() { close(both) })
		}
		select {
		case <-both:
		case <-time.After(3 * time.Second):
		}
		return false
	}
	got, err := Push(t.Context(), reg.client(t), s.images, Options{Jobs: 2})
	if err != nil {
		t.Fatal(err)
	}
	if got.BlobsMounted == 0 {
		t.Fatal("nothing mounted")
	}
	if peak.Load() < 2 {
		t.Errorf("at most %d mount of the shared base layer in flight at once, want its three mounts together", peak.Load())
	}
}
