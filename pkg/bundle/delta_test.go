package bundle

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/ferry-dev/ferry/pkg/graph"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// haveOf is what a target holding the given entries has: every blob they
// use, as a relocated lock of them says.
func haveOf(entries ...Entry) *Have {
	h := &Have{Bases: []DeltaBase{{Kind: BaseLock, Name: "v1.lock.yaml", Digest: "sha256:0000000000000000000000000000000000000000000000000000000000000001"}}}
	for _, e := range entries {
		for _, b := range e.Root.AllBlobs() {
			h.Add(b.Digest, "v1.lock.yaml", "registry.internal/mirror/"+e.Name, "")
		}
	}
	return h
}

func entryNamed(t *testing.T, w *world, name string) Entry {
	t.Helper()
	for _, e := range w.entries {
		if e.Name == name {
			return e
		}
	}
	t.Fatalf("no entry %s", name)
	return Entry{}
}

// TestDeltaLeavesOutHeldBlobs: with Have, every blob the target holds is
// left out and listed with the images that need it; every manifest and
// every other blob is in; readers take the listed blobs as expected.
func TestDeltaLeavesOutHeldBlobs(t *testing.T) {
	w := newWorld(t)
	dir := t.TempDir()
	api := entryNamed(t, w, w.std.Shared[0].Ref)
	have := haveOf(api)
	path := filepath.Join(dir, "delta.tar")
	st, err := Write(t.Context(), path, w.entries, Options{Lock: w.lock, Jobs: 4, Have: have})
	if err != nil {
		t.Fatal(err)
	}
	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	d := r.Delta()
	if d == nil {
		t.Fatal("Delta() = nil for a bundle written with Have")
	}
	// Who needs each held blob, from the walked graphs.
	wantUsers := map[string][]string{}
	for _, e := range w.entries {
		for _, b := range e.Root.AllBlobs() {
			if _, ok := have.Blobs[b.Digest]; ok && !slices.Contains(wantUsers[b.Digest.String()], e.Name) {
				wantUsers[b.Digest.String()] = append(wantUsers[b.Digest.String()], e.Name)
			}
		}
	}
	if len(d.Absent) != len(have.Blobs) || len(d.Absent) < 3 {
		t.Fatalf("absent = %d blobs, want the %d blobs of %s (config and at least two layers)", len(d.Absent), len(have.Blobs), api.Name)
	}
	var absentBytes int64
	for _, a := range d.Absent {
		h := mustHash(t, a.Digest)
		if _, ok := r.Has(h); ok {
			t.Errorf("%s is listed as absent but the bundle holds it", a.Digest)
		}
		want := wantUsers[a.Digest]
		slices.Sort(want)
		if !cmp.Equal(a.Images, want) {
			t.Errorf("%s: images %v, want %v", a.Digest, a.Images, want)
		}
		if !cmp.Equal(a.Bases, []string{"v1.lock.yaml"}) || !cmp.Equal(a.Repositories, []string{"registry.internal/mirror/" + api.Name}) {
			t.Errorf("%s: bases %v, repositories %v", a.Digest, a.Bases, a.Repositories)
		}
		absentBytes += a.Size
	}
	// The shared base layers are used by web and cli too: absent all the same.
	if got := wantUsers[d.Absent[0].Digest]; len(got) == 0 {
		t.Errorf("no image needs %s", d.Absent[0].Digest)
	}
	for _, e := range w.entries {
		for _, m := range e.Root.Manifests() {
			if _, ok := r.Has(m.Desc.Digest); !ok {
				t.Errorf("manifest %s of %s left out: manifests always travel", m.Desc.Digest, e.Name)
			}
		}
		for _, b := range e.Root.AllBlobs() {
			if _, held := have.Blobs[b.Digest]; !held {
				if _, ok := r.Has(b.Digest); !ok {
					t.Errorf("blob %s of %s, not held at the target, is not in the delta", b.Digest, e.Name)
				}
			}
		}
	}

	rep, err := Verify(t.Context(), path, VerifyOptions{})
	if err != nil {
		t.Fatalf("Verify of a delta: %v", err)
	}
	if rep.Delta == nil || rep.Delta.Blobs != len(d.Absent) || rep.Delta.Bytes != absentBytes {
		t.Errorf("verify report delta = %+v, want %d blobs, %d bytes", rep.Delta, len(d.Absent), absentBytes)
	}

	full := filepath.Join(dir, "full.tar")
	write(t, w, full, w.entries)
	sd, err := Inspect(path)
	if err != nil {
		t.Fatal(err)
	}
	sf, err := Inspect(full)
	if err != nil {
		t.Fatal(err)
	}
	if sd.Delta == nil || sd.Delta.Blobs != len(d.Absent) || sf.Delta != nil {
		t.Errorf("inspect delta = %+v (full: %+v)", sd.Delta, sf.Delta)
	}
	if sf.UniqueBytes-sd.UniqueBytes != absentBytes {
		t.Errorf("unique bytes: full %d, delta %d: differ by %d, want the %d absent", sf.UniqueBytes, sd.UniqueBytes, sf.UniqueBytes-sd.UniqueBytes, absentBytes)
	}
	if st.Size > sf.FileSize-absentBytes+64<<10 {
		t.Errorf("delta is %d bytes, full %d: no smaller by the %d absent", st.Size, sf.FileSize, absentBytes)
	}

	// Same inputs, same bytes; a rerun fetches nothing.
	again := filepath.Join(dir, "again.tar")
	if _, err := Write(t.Context(), again, w.fresh(), Options{Lock: w.lock, Jobs: 4, Have: haveOf(api)}); err != nil {
		t.Fatal(err)
	}
	if fileHash(t, again) != fileHash(t, path) {
		t.Error("two deltas of the same inputs differ")
	}
	st, err = Write(t.Context(), path, w.fresh(), Options{Lock: w.lock, Jobs: 4, Have: haveOf(api)})
	if err != nil || !st.Unchanged {
		t.Errorf("rerun over the finished delta: unchanged %v, err %v", st.Unchanged, err)
	}
}

// TestDeltaIsCheckedAsSuch: a delta's record cannot be dropped or edited
// unnoticed, and a blob it does not list is still missing; a complete
// bundle with a blob taken out is refused as before.
func TestDeltaIsCheckedAsSuch(t *testing.T) {
	w := newWorld(t)
	dir := t.TempDir()
	api := entryNamed(t, w, w.std.Shared[0].Ref)
	delta := filepath.Join(dir, "delta.tar")
	if _, err := Write(t.Context(), delta, w.entries, Options{Lock: w.lock, Jobs: 4, Have: haveOf(api)}); err != nil {
		t.Fatal(err)
	}
	full := filepath.Join(dir, "full.tar")
	write(t, w, full, w.entries)
	// A blob of the large image, held nowhere but in the bundle.
	large := entryNamed(t, w, w.std.Large.Ref)
	var own v1.Hash
	for _, b := range large.Root.AllBlobs() {
		own = b.Digest
	}

	tests := []struct {
		name    string
		src     string
		edit    func(files map[string][]byte)
		open    bool   // Open refuses it
		missing string // else Verify names this digest
	}{
		{name: "delta record dropped", src: delta, open: true, edit: func(f map[string][]byte) { f[DeltaFile] = nil }},
		{name: "delta record edited", src: delta, open: true, edit: func(f map[string][]byte) {
			var d Delta
			if err := json.Unmarshal(f[DeltaFile], &d); err != nil {
				t.Fatal(err)
			}
			d.Absent = d.Absent[1:]
			f[DeltaFile], _ = json.MarshalIndent(d, "", "  ")
		}},
		{name: "delta annotation dropped", src: delta, open: true, edit: func(f map[string][]byte) {
			editIndex(t, f, func(idx *v1.IndexManifest) { delete(idx.Annotations, AnnotationDeltaDigest) })
		}},
		{name: "delta missing an unlisted blob", src: delta, missing: own.String(), edit: func(f map[string][]byte) { f[blobName(own)] = nil }},
		{name: "complete bundle missing a blob", src: full, missing: own.String(), edit: func(f map[string][]byte) { f[blobName(own)] = nil }},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(dir, "edited-"+string(rune('a'+i))+".tar")
			retar(t, tt.src, out, tt.edit)
			_, err := Verify(t.Context(), out, VerifyOptions{})
			if tt.open {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("Verify = %v, want ErrInvalid", err)
				}
				return
			}
			var ve *VerifyError
			if !errors.As(err, &ve) {
				t.Fatalf("Verify = %v, want a *VerifyError", err)
			}
			if len(ve.Problems) != 1 || ve.Problems[0].Digest != tt.missing {
				t.Errorf("problems = %v, want only %s", ve.Problems, tt.missing)
			}
		})
	}
}

// TestDeltaSplit: a delta cut into parts reads as a delta through them.
func TestDeltaSplit(t *testing.T) {
	w := newWorld(t)
	dir := t.TempDir()
	api := entryNamed(t, w, w.std.Shared[0].Ref)
	path := filepath.Join(dir, "delta.tar")
	if _, err := Write(t.Context(), path, w.entries, Options{Lock: w.lock, Jobs: 4, Have: haveOf(api), SplitSize: MinSplitSize}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(PartPath(path, 2)); err != nil {
		t.Fatalf("want at least two parts: %v", err)
	}
	rep, err := Verify(t.Context(), PartPath(path, 1), VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Delta == nil || rep.Delta.Blobs != len(haveOf(api).Blobs) {
		t.Errorf("split delta verify report delta = %+v", rep.Delta)
	}
	if !IsBundle(path) || !IsBundle(PartPath(path, 1)) {
		t.Error("IsBundle does not know a split bundle")
	}
}

// TestDeltaResumes: an interrupted delta resumes from its journal, and a
// journal of the same images against another base is not taken for it.
func TestDeltaResumes(t *testing.T) {
	w := newWorld(t)
	dir := t.TempDir()
	api := entryNamed(t, w, w.std.Shared[0].Ref)
	clean := filepath.Join(dir, "clean.tar")
	total, err := Write(t.Context(), clean, w.entries, Options{Lock: w.lock, Jobs: 4, Have: haveOf(api)})
	if err != nil {
		t.Fatal(err)
	}

	path := filepath.Join(dir, "delta.tar")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var handed atomic.Int32
	entries := wrap(w.entries, func(f graph.Fetcher) graph.Fetcher {
		return &counting{Fetcher: f, after: func(int) {
			if handed.Add(1) == 3 {
				cancel()
			}
		}}
	})
	if _, err := Write(ctx, path, entries, Options{Lock: w.lock, Jobs: 1, Have: haveOf(api)}); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted Write: err = %v, want context.Canceled", err)
	}
	journaled := len(readJournalLines(t, JournalPath(path)))
	if journaled == 0 || journaled >= total.Fetched {
		t.Fatalf("journal lists %d blobs of %d: the cut did not land mid-run", journaled, total.Fetched)
	}
	st, err := Write(t.Context(), path, w.fresh(), Options{Lock: w.lock, Jobs: 4, Have: haveOf(api)})
	if err != nil {
		t.Fatal(err)
	}
	if st.Resumed != journaled || st.Fetched != total.Fetched-journaled {
		t.Errorf("rerun resumed %d and fetched %d, want %d and %d", st.Resumed, st.Fetched, journaled, total.Fetched-journaled)
	}
	if fileHash(t, path) != fileHash(t, clean) {
		t.Error("the resumed delta differs from one written in one go")
	}

	// Against another base the layout differs: nothing is reused.
	other := filepath.Join(dir, "other.tar")
	ctx, cancel = context.WithCancel(t.Context())
	handed.Store(0)
	_, _ = Write(ctx, other, entries, Options{Lock: w.lock, Jobs: 1, Have: haveOf(api)})
	cancel()
	web := entryNamed(t, w, w.std.Shared[1].Ref)
	st, err = Write(t.Context(), other, w.fresh(), Options{Lock: w.lock, Jobs: 4, Have: haveOf(web)})
	if err != nil {
		t.Fatal(err)
	}
	if st.Resumed != 0 {
		t.Errorf("a delta against another base resumed %d blobs of a journal not its own", st.Resumed)
	}
}
