package bundle

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ferry-dev/ferry/pkg/access"
	"github.com/ferry-dev/ferry/pkg/graph"
	"github.com/ferry-dev/ferry/pkg/imageref"
	"github.com/ferry-dev/ferry/pkg/internal/testutil"
	"github.com/ferry-dev/ferry/pkg/lock"
	"github.com/ferry-dev/ferry/pkg/source"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// world is the standard fixture set in an in-memory registry, walked.
type world struct {
	std     testutil.Standard
	entries []Entry
	lock    *lock.File
	client  *access.Client
}

// fresh returns the entries with new fetchers: a source.Repo remembers a
// failed first connection, so a run after a cancelled one needs new ones,
// as a new ferry process would have.
func (w *world) fresh() []Entry {
	out := slices.Clone(w.entries)
	for i := range out {
		out[i].Fetcher = source.New(w.client, out[i].Fetcher.(*source.Repo).Repository())
	}
	return out
}

// newWorld pushes the standard set into go-containerregistry's in-memory
// registry and walks every image through pkg/source, as ferry pkg does.
func newWorld(t *testing.T) *world {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	reg := &testutil.Registry{Host: host, Scheme: "http", Transport: http.DefaultTransport, Auth: authn.Anonymous}
	std := testutil.StandardSet(t, reg, 3<<20)
	client, err := access.New(access.Options{InsecureHosts: []string{host}})
	if err != nil {
		t.Fatal(err)
	}
	w := &world{std: std, lock: lock.New(), client: client}
	for _, f := range std.All() {
		ref, err := imageref.Parse(f.Ref)
		if err != nil {
			t.Fatal(err)
		}
		fetcher := source.New(client, ref.Repo)
		desc := v1.Descriptor{Digest: v1.Hash{Algorithm: "sha256", Hex: strings.TrimPrefix(f.Digest, "sha256:")}, Size: int64(len(f.Manifest)), MediaType: types.MediaType(f.MediaType)}
		root, err := graph.Walk(t.Context(), fetcher, desc, graph.Options{})
		if err != nil {
			t.Fatalf("walking %s: %v", f.Ref, err)
		}
		w.entries = append(w.entries, Entry{Name: f.Ref, Root: root, Fetcher: fetcher})
		w.lock.Images = append(w.lock.Images, lock.Image{Image: f.Ref, Digest: f.Digest, MediaType: f.MediaType, Resolved: ref.Repo.Name() + "@" + f.Digest})
	}
	return w
}

// counting wraps a fetcher and counts blob fetches by digest.
type counting struct {
	graph.Fetcher
	mu    sync.Mutex
	blobs map[string]int
	// after is called after each blob is handed out.
	after func(n int)
	n     int
}

func (c *counting) Blob(ctx context.Context, d v1.Descriptor) (io.ReadCloser, error) {
	c.mu.Lock()
	if c.blobs == nil {
		c.blobs = map[string]int{}
	}
	c.blobs[d.Digest.String()]++
	c.n++
	n := c.n
	c.mu.Unlock()
	rc, err := c.Fetcher.Blob(ctx, d)
	if err != nil {
		return nil, err
	}
	if c.after != nil {
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return nil, err
		}
		c.after(n)
		return io.NopCloser(bytes.NewReader(b)), nil
	}
	return rc, nil
}

// wrap gives every entry the same wrapping fetcher.
func wrap(entries []Entry, f func(graph.Fetcher) graph.Fetcher) []Entry {
	out := slices.Clone(entries)
	for i := range out {
		out[i].Fetcher = f(out[i].Fetcher)
	}
	return out
}

func write(t *testing.T, w *world, path string, entries []Entry) Stats {
	t.Helper()
	st, err := Write(t.Context(), path, entries, Options{Lock: w.lock, Jobs: 4})
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	return st
}

// tarNames lists the bundle's entries in order.
func tarNames(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var names []string
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatalf("reading %s with archive/tar: %v", path, err)
		}
		if h.Mode != 0o644 && h.Typeflag == tar.TypeReg || h.Uid != 0 || h.Gid != 0 || h.Uname != "" || !h.ModTime.Equal(modTime) {
			t.Errorf("%s: header not normalised: mode %o uid %d gid %d uname %q mtime %v", h.Name, h.Mode, h.Uid, h.Gid, h.Uname, h.ModTime)
		}
		names = append(names, h.Name)
	}
}

func TestWriteAndRead(t *testing.T) {
	w := newWorld(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "bundle.tar")
	st := write(t, w, path, w.entries)
	if st.Images != len(w.entries) || st.Fetched != st.Files-countManifests(w) || st.Resumed != 0 {
		t.Errorf("stats = %+v", st)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Size() != st.Size {
		t.Fatalf("bundle size %v (%v), stats say %d", fi, err, st.Size)
	}
	for _, p := range []string{PartialPath(path), JournalPath(path)} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind after success (stat: %v)", p, err)
		}
	}

	names := tarNames(t, path)
	if got, want := names[:5], []string{"oci-layout", "index.json", "ferry.lock.yaml", "blobs/", "blobs/sha256/"}; !cmp.Equal(got, want) {
		t.Errorf("first entries = %v, want %v", got, want)
	}
	if !slices.IsSorted(names[5:]) {
		t.Errorf("blobs not sorted by digest: %v", names[5:])
	}
	// The base layers are shared by three images: stored once.
	for _, b := range w.std.Shared[0].Blobs[1:3] {
		n := 0
		for _, name := range names {
			if name == "blobs/sha256/"+strings.TrimPrefix(b, "sha256:") {
				n++
			}
		}
		if n != 1 {
			t.Errorf("shared blob %s stored %d times, want once", b, n)
		}
	}

	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var gotNames []string
	for _, e := range r.Entries() {
		gotNames = append(gotNames, e.Name)
	}
	var wantNames []string
	for _, f := range w.std.All() {
		wantNames = append(wantNames, f.Ref)
	}
	slices.Sort(wantNames)
	if diff := cmp.Diff(wantNames, gotNames); diff != "" {
		t.Errorf("entries (-want +got):\n%s", diff)
	}
	if r.Lock() == nil || len(r.Lock().Images) != len(w.entries) {
		t.Errorf("lock in bundle = %+v", r.Lock())
	}
	var check func(f testutil.Fixture)
	check = func(f testutil.Fixture) {
		d := v1.Descriptor{Digest: mustHash(t, f.Digest), Size: int64(len(f.Manifest))}
		got, err := r.Manifest(t.Context(), d)
		if err != nil {
			t.Errorf("manifest %s of %s: %v", f.Digest, f.Ref, err)
			return
		}
		if !bytes.Equal(got, f.Manifest) {
			t.Errorf("manifest %s of %s is not byte-equal to the source", f.Digest, f.Ref)
		}
		for _, b := range f.Blobs {
			size, ok := r.Has(mustHash(t, b))
			if !ok {
				t.Errorf("blob %s of %s missing", b, f.Ref)
				continue
			}
			rc, err := r.Blob(t.Context(), v1.Descriptor{Digest: mustHash(t, b), Size: size})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, rc); err != nil {
				t.Errorf("reading blob %s: %v", b, err)
			}
			rc.Close()
		}
		for _, c := range f.Children {
			check(c)
		}
	}
	for _, f := range w.std.All() {
		check(f)
	}
	for _, e := range r.Entries() {
		if e.Desc.Annotations[AnnotationImageName] == "" {
			t.Errorf("%s: no %s annotation", e.Name, AnnotationImageName)
		}
		n, err := r.Walk(t.Context(), e)
		if err != nil {
			t.Errorf("walking %s in the bundle: %v", e.Name, err)
			continue
		}
		if n.Desc.Digest != e.Desc.Digest {
			t.Errorf("walked %s, want %s", n.Desc.Digest, e.Desc.Digest)
		}
	}
	if _, err := Verify(t.Context(), path, VerifyOptions{}); err != nil {
		t.Errorf("Verify of a fresh bundle: %v", err)
	}
}

func countManifests(w *world) int {
	seen := map[v1.Hash]bool{}
	for _, e := range w.entries {
		for _, m := range e.Root.Manifests() {
			seen[m.Desc.Digest] = true
		}
	}
	return len(seen)
}

func mustHash(t *testing.T, s string) v1.Hash {
	t.Helper()
	h, err := v1.NewHash(s)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func fileHash(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func TestDeterministic(t *testing.T) {
	w := newWorld(t)
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.tar"), filepath.Join(dir, "b.tar")
	write(t, w, a, w.entries)
	reversed := slices.Clone(w.entries)
	slices.Reverse(reversed)
	if _, err := Write(t.Context(), b, reversed, Options{Lock: w.lock, Jobs: 1}); err != nil {
		t.Fatal(err)
	}
	if fileHash(t, a) != fileHash(t, b) {
		t.Error("two bundles of the same images differ")
	}
}

func TestResume(t *testing.T) {
	w := newWorld(t)
	dir := t.TempDir()
	clean := filepath.Join(dir, "clean.tar")
	total := write(t, w, clean, w.entries).Fetched

	path := filepath.Join(dir, "bundle.tar")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	// Cancel once a few blobs have been handed out, one at a time so the
	// cut is clean.
	var handed atomic.Int32
	entries := wrap(w.entries, func(f graph.Fetcher) graph.Fetcher {
		return &counting{Fetcher: f, after: func(int) {
			if handed.Add(1) == 5 {
				cancel()
			}
		}}
	})
	if _, err := Write(ctx, path, entries, Options{Lock: w.lock, Jobs: 1}); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted Write: err = %v, want context.Canceled", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("an interrupted Write left something at the final path (stat: %v)", err)
	}
	journaled := readJournalLines(t, JournalPath(path))
	if len(journaled) == 0 || len(journaled) >= total {
		t.Fatalf("journal lists %d blobs of %d: the cut did not land mid-run", len(journaled), total)
	}

	// Damage one journaled blob in the partial file: it must be fetched again.
	damaged := journaled[0]
	damagePartial(t, w, PartialPath(path), damaged)

	shared := &counting{}
	again := wrap(w.fresh(), func(f graph.Fetcher) graph.Fetcher { return &sharedCounting{f, shared} })
	st, err := Write(t.Context(), path, again, Options{Lock: w.lock, Jobs: 4})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := st.Fetched, total-len(journaled)+1; got != want {
		t.Errorf("rerun fetched %d blobs, want %d (%d total, %d journaled, 1 damaged)", got, want, total, len(journaled))
	}
	if st.Resumed != len(journaled)-1 {
		t.Errorf("rerun resumed %d blobs, want %d", st.Resumed, len(journaled)-1)
	}
	for _, d := range journaled[1:] {
		if shared.blobs[d] != 0 {
			t.Errorf("journaled blob %s fetched again", d)
		}
	}
	if shared.blobs[damaged] != 1 {
		t.Errorf("damaged blob %s fetched %d times, want 1", damaged, shared.blobs[damaged])
	}
	if fileHash(t, path) != fileHash(t, clean) {
		t.Error("resumed bundle differs from one written in one go")
	}

	t.Run("another plan starts over", func(t *testing.T) {
		p := filepath.Join(dir, "other.tar")
		ctx, cancel := context.WithCancel(t.Context())
		var n atomic.Int32
		first := wrap(w.entries, func(f graph.Fetcher) graph.Fetcher {
			return &counting{Fetcher: f, after: func(int) {
				if n.Add(1) == 3 {
					cancel()
				}
			}}
		})
		_, _ = Write(ctx, p, first, Options{Lock: w.lock, Jobs: 1})
		cancel()
		// Without the lock the layout differs: nothing may be reused.
		st, err := Write(t.Context(), p, w.fresh(), Options{Jobs: 4})
		if err != nil {
			t.Fatal(err)
		}
		if st.Resumed != 0 || st.Fetched != total {
			t.Errorf("other plan: resumed %d, fetched %d; want 0 and %d", st.Resumed, st.Fetched, total)
		}
	})
}

// sharedCounting counts into one counter whatever fetcher serves.
type sharedCounting struct {
	graph.Fetcher
	c *counting
}

func (s *sharedCounting) Blob(ctx context.Context, d v1.Descriptor) (io.ReadCloser, error) {
	s.c.mu.Lock()
	if s.c.blobs == nil {
		s.c.blobs = map[string]int{}
	}
	s.c.blobs[d.Digest.String()]++
	s.c.mu.Unlock()
	return s.Fetcher.Blob(ctx, d)
}

func readJournalLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("no journal after an interrupted run: %v", err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if !strings.HasPrefix(lines[0], journalMagic) {
		t.Fatalf("journal starts %q", lines[0])
	}
	return lines[1:]
}

// damagePartial flips the first byte of blob digest in a partial bundle,
// finding it through the plan, as Write lays it out.
func damagePartial(t *testing.T, w *world, path, digest string) {
	t.Helper()
	b, err := bytes.NewBuffer(nil), error(nil)
	if err = w.lock.Encode(b, lock.FormatFerry); err != nil {
		t.Fatal(err)
	}
	p, err := newPlan(w.entries, b.Bytes(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range p.items {
		if it.desc.Digest.String() == digest {
			flip(t, path, it.dataOff)
			return
		}
	}
	t.Fatalf("%s not in the plan", digest)
}

func flip(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	one := make([]byte, 1)
	if _, err := f.ReadAt(one, off); err != nil {
		t.Fatal(err)
	}
	one[0] ^= 0xff
	if _, err := f.WriteAt(one, off); err != nil {
		t.Fatal(err)
	}
}

// offsetOf finds where a tar entry's content starts.
func offsetOf(t *testing.T, path, name string) int64 {
	t.Helper()
	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	h, err := v1.NewHash("sha256:" + strings.TrimPrefix(name, blobDir))
	if err != nil {
		t.Fatal(err)
	}
	s, ok := r.blobs[h]
	if !ok {
		t.Fatalf("%s not in %s", name, path)
	}
	return s.off
}

func TestTampered(t *testing.T) {
	w := newWorld(t)
	dir := t.TempDir()
	clean := filepath.Join(dir, "clean.tar")
	write(t, w, clean, w.entries)
	original, err := os.ReadFile(clean)
	if err != nil {
		t.Fatal(err)
	}
	base := w.std.Shared[0].Blobs[2] // a base layer all three Shared images use
	tests := []struct {
		name       string
		digest     string
		wantImages []string
	}{
		{"shared layer", base, []string{w.std.Shared[0].Ref, w.std.Shared[1].Ref, w.std.Shared[2].Ref}},
		{"child manifest", w.std.OCIIndex.Children[1].Digest, []string{w.std.OCIIndex.Ref}},
		{"config", w.std.ConfigOnly.Blobs[0], []string{w.std.ConfigOnly.Ref}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "bundle.tar")
			if err := os.WriteFile(path, original, 0o644); err != nil {
				t.Fatal(err)
			}
			flip(t, path, offsetOf(t, path, blobDir+strings.TrimPrefix(tt.digest, "sha256:"))+10)

			rep, err := Verify(t.Context(), path, VerifyOptions{Jobs: 2})
			var ve *VerifyError
			if !errors.As(err, &ve) {
				t.Fatalf("Verify: err = %v, want a *VerifyError", err)
			}
			if len(rep.Problems) != 1 {
				t.Fatalf("problems = %+v, want one", rep.Problems)
			}
			p := rep.Problems[0]
			slices.Sort(p.Images)
			want := slices.Clone(tt.wantImages)
			slices.Sort(want)
			if p.Digest != tt.digest || !cmp.Equal(p.Images, want) {
				t.Errorf("problem = %+v, want digest %s needed by %v", p, tt.digest, want)
			}
			if !strings.Contains(err.Error(), tt.digest) {
				t.Errorf("error %q does not name %s", err, tt.digest)
			}

			r, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			size, _ := r.Has(mustHash(t, tt.digest))
			rc, err := r.Blob(t.Context(), v1.Descriptor{Digest: mustHash(t, tt.digest), Size: size})
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			if _, err := io.Copy(io.Discard, rc); !errors.Is(err, graph.ErrDigestMismatch) {
				t.Errorf("reading the damaged blob: err = %v, want ErrDigestMismatch", err)
			}
		})
	}
}

// lying serves wrong bytes for one blob.
type lying struct {
	graph.Fetcher
	digest string
}

func (l *lying) Blob(ctx context.Context, d v1.Descriptor) (io.ReadCloser, error) {
	if d.Digest.String() != l.digest {
		return l.Fetcher.Blob(ctx, d)
	}
	return io.NopCloser(bytes.NewReader(make([]byte, d.Size))), nil
}

func TestWriteRefusesBadSource(t *testing.T) {
	w := newWorld(t)
	path := filepath.Join(t.TempDir(), "bundle.tar")
	bad := w.std.Shared[1].Blobs[1]
	entries := wrap(w.entries, func(f graph.Fetcher) graph.Fetcher { return &lying{f, bad} })
	_, err := Write(t.Context(), path, entries, Options{Jobs: 2})
	if !errors.Is(err, graph.ErrDigestMismatch) {
		t.Fatalf("err = %v, want ErrDigestMismatch", err)
	}
	for _, want := range []string{bad, w.std.Shared[1].Ref} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed Write left a bundle at the final path")
	}
	// The bad blob is not journaled: a rerun with a good source finishes.
	st, err := Write(t.Context(), path, w.fresh(), Options{Jobs: 2})
	if err != nil {
		t.Fatal(err)
	}
	if st.Fetched == 0 || st.Resumed == 0 {
		t.Errorf("rerun after a bad source: %+v, want some resumed and some fetched", st)
	}
	if _, err := Verify(t.Context(), path, VerifyOptions{}); err != nil {
		t.Errorf("Verify after the rerun: %v", err)
	}
}

func TestInspect(t *testing.T) {
	w := newWorld(t)
	path := filepath.Join(t.TempDir(), "bundle.tar")
	write(t, w, path, w.entries)
	s, err := Inspect(path)
	if err != nil {
		t.Fatal(err)
	}
	if !s.HasLock || len(s.Images) != len(w.entries) {
		t.Fatalf("summary: lock %v, %d images", s.HasLock, len(s.Images))
	}
	plats := map[string][]string{}
	for _, im := range s.Images {
		for _, p := range im.Platforms {
			plats[im.Name] = append(plats[im.Name], p.Platform)
		}
	}
	if got, want := plats[w.std.OCIIndex.Ref], []string{"linux/amd64", "linux/arm64", "linux/arm/v7"}; !cmp.Equal(got, want) {
		t.Errorf("platforms of %s = %v, want %v", w.std.OCIIndex.Ref, got, want)
	}
	if got := plats[w.std.Nested.Ref]; len(got) != 2 {
		t.Errorf("platforms of nested index = %v, want two", got)
	}
	if got := plats[w.std.ConfigOnly.Ref]; !cmp.Equal(got, []string{"linux/amd64"}) {
		t.Errorf("platform of config-only image (from its config) = %v", got)
	}
	if s.SharedBytes < 256<<10 {
		t.Errorf("shared bytes = %d, want at least the 256 KiB base layer", s.SharedBytes)
	}
	if s.TotalBytes-s.UniqueBytes < 2*(256<<10) {
		t.Errorf("total %d - unique %d: sharing saved less than two copies of the base layer", s.TotalBytes, s.UniqueBytes)
	}
	if s.UniqueBytes >= s.FileSize {
		t.Errorf("unique bytes %d not below file size %d", s.UniqueBytes, s.FileSize)
	}
}

func TestRerunOfCompleteBundleFetchesNothing(t *testing.T) {
	w := newWorld(t)
	path := filepath.Join(t.TempDir(), "bundle.tar")
	write(t, w, path, w.entries)
	before := fileHash(t, path)

	shared := &counting{}
	again := wrap(w.fresh(), func(f graph.Fetcher) graph.Fetcher { return &sharedCounting{f, shared} })
	st, err := Write(t.Context(), path, again, Options{Lock: w.lock, Jobs: 4})
	if err != nil {
		t.Fatal(err)
	}
	if !st.Unchanged || st.Fetched != 0 || len(shared.blobs) != 0 {
		t.Errorf("rerun: unchanged=%v, fetched %d blobs (%d asked), want nothing fetched", st.Unchanged, st.Fetched, len(shared.blobs))
	}
	if fileHash(t, path) != before {
		t.Error("the rerun changed the bundle")
	}

	// Another plan (here: one image fewer) is written anew.
	st, err = Write(t.Context(), path, w.fresh()[1:], Options{Jobs: 4})
	if err != nil {
		t.Fatal(err)
	}
	if st.Unchanged {
		t.Error("a bundle of other images was taken for the one already there")
	}
}

func TestCurrentRecognisesTheBundleOfALock(t *testing.T) {
	w := newWorld(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "bundle.tar")
	if Current(t.Context(), path, w.lock, false) {
		t.Fatal("a missing file was taken for a current bundle")
	}
	write(t, w, path, w.entries)
	if !Current(t.Context(), path, w.lock, false) {
		t.Fatal("the bundle just written from this lock is not current")
	}

	other := func(edit func(*lock.File)) *lock.File {
		lf := *w.lock
		lf.Images = slices.Clone(w.lock.Images)
		edit(&lf)
		return &lf
	}
	for name, lf := range map[string]*lock.File{
		"one image fewer": other(func(lf *lock.File) { lf.Images = lf.Images[1:] }),
		"another digest":  other(func(lf *lock.File) { lf.Images[0].Digest = "sha256:" + strings.Repeat("a", 64) }),
		"renamed":         other(func(lf *lock.File) { lf.Images[0].Image += "-renamed" }),
		"moved source":    other(func(lf *lock.File) { lf.Images[0].Resolved = "elsewhere.example/x@" + lf.Images[0].Digest }),
	} {
		if Current(t.Context(), path, lf, false) {
			t.Errorf("%s: taken for the bundle already there", name)
		}
	}

	// Damage: a manifest byte flipped, then the file cut short.
	damaged := filepath.Join(dir, "damaged.tar")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(damaged, b, 0o644); err != nil {
		t.Fatal(err)
	}
	h := mustHash(t, w.std.All()[0].Digest)
	flip(t, damaged, offsetOf(t, damaged, "blobs/sha256/"+h.Hex)+10)
	if Current(t.Context(), damaged, w.lock, false) {
		t.Error("a bundle with a damaged manifest is taken for current")
	}
	if err := os.WriteFile(damaged, b[:len(b)-4096], 0o644); err != nil {
		t.Fatal(err)
	}
	if Current(t.Context(), damaged, w.lock, false) {
		t.Error("a truncated bundle is taken for current")
	}
	// Same content, other bytes: a run would write something else.
	if err := os.WriteFile(damaged, append(slices.Clone(b), make([]byte, 10240)...), 0o644); err != nil {
		t.Fatal(err)
	}
	if Current(t.Context(), damaged, w.lock, false) {
		t.Error("a bundle with bytes after the end of the archive is taken for current")
	}
}
