package bundle

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ferry-dev/ferry/pkg/graph"
	"github.com/ferry-dev/ferry/pkg/progress"
	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// joined is what `cat BUNDLE.part-*` gives: the parts in glob order.
func joined(t *testing.T, path string) []byte {
	t.Helper()
	names, err := filepath.Glob(path + ".part-*")
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b...)
	}
	return out
}

// splitWorld writes the standard set once unsplit and once split at
// MinSplitSize, so that blobs of 3 MiB are cut across parts.
func splitWorld(t *testing.T) (w *world, plain, split string) {
	t.Helper()
	w = newWorld(t)
	plain = filepath.Join(t.TempDir(), "plain.tar")
	write(t, w, plain, w.entries)
	split = filepath.Join(t.TempDir(), "bundle.tar")
	if _, err := Write(t.Context(), split, w.entries, Options{Lock: w.lock, Jobs: 4, SplitSize: MinSplitSize}); err != nil {
		t.Fatalf("split Write: %v", err)
	}
	return w, plain, split
}

func TestSplitJoinsToTheUnsplitBundle(t *testing.T) {
	_, plain, split := splitWorld(t)
	want, err := os.ReadFile(plain)
	if err != nil {
		t.Fatal(err)
	}
	if got := joined(t, split); !bytes.Equal(got, want) {
		t.Fatalf("the joined parts (%d bytes) differ from the unsplit bundle (%d bytes)", len(got), len(want))
	}
	ps, err := ReadParts(split)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps.Parts) < 3 || ps.Size != int64(len(want)) || ps.PartSize != MinSplitSize {
		t.Errorf("parts file: %d parts, size %d, partSize %d; want at least 3, %d, %d", len(ps.Parts), ps.Size, ps.PartSize, len(want), MinSplitSize)
	}
	for i, p := range ps.Parts {
		_, digest, err := hashFile(PartPath(split, i+1), progress.Nop{})
		if err != nil || digest != p.Digest {
			t.Errorf("%s: sha256 %s (%v), parts file says %s", p.Name, digest, err, p.Digest)
		}
	}
	// Nothing else is left beside the parts: no bundle at the base name,
	// no hidden work files.
	files, _ := os.ReadDir(filepath.Dir(split))
	var names []string
	for _, f := range files {
		names = append(names, f.Name())
	}
	wantNames := []string{"bundle.tar.parts.json"}
	for i := range ps.Parts {
		wantNames = append(wantNames, filepath.Base(PartPath(split, i+1)))
	}
	slices.Sort(wantNames)
	if diff := cmp.Diff(wantNames, names); diff != "" {
		t.Errorf("files beside the parts (-want +got):\n%s", diff)
	}
}

func TestSplitReadsAcrossParts(t *testing.T) {
	_, plain, split := splitWorld(t)
	pr, err := Open(plain)
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	for _, path := range []string{split, PartPath(split, 1), PartPath(split, 2), PartsPath(split)} {
		t.Run(filepath.Base(path), func(t *testing.T) {
			r, err := Open(path)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer r.Close()
			if diff := cmp.Diff(pr.Entries(), r.Entries()); diff != "" {
				t.Errorf("entries (-unsplit +split):\n%s", diff)
			}
			if r.Size() != pr.Size() {
				t.Errorf("size %d, want %d", r.Size(), pr.Size())
			}
			for h, s := range pr.blobs {
				rc, err := r.Blob(t.Context(), v1.Descriptor{Digest: h, Size: s.size})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := io.Copy(io.Discard, rc); err != nil {
					t.Errorf("blob %s: %v", h, err)
				}
				rc.Close()
			}
			sum, err := Inspect(path)
			if err != nil || sum.Parts == nil || len(sum.Parts.Parts) < 3 || sum.FileSize != pr.Size() {
				t.Errorf("Inspect: %v; want the parts file and the whole size %d (%+v)", err, pr.Size(), sum.Parts)
			}
			var prog bytesSeen
			rep, err := Verify(t.Context(), path, VerifyOptions{Progress: &prog})
			if err != nil {
				t.Errorf("Verify: %v", err)
			}
			// The parts are hashed too, and the progress says so.
			if want := rep.Bytes + pr.Size(); prog.total != want || prog.added.Load() != want {
				t.Errorf("progress: started with %d, added %d; want %d (blobs and parts)", prog.total, prog.added.Load(), want)
			}
		})
	}
}

// bytesSeen records the total a progress report starts with and the bytes
// added.
type bytesSeen struct {
	progress.Nop
	total int64
	added atomic.Int64
}

func (b *bytesSeen) Start(total int64, _ int) { b.total = total }
func (b *bytesSeen) Add(n int64)              { b.added.Add(n) }

func TestSplitVerifyNamesTheBadPart(t *testing.T) {
	_, _, split := splitWorld(t)
	part2 := PartPath(split, 2)
	tests := []struct {
		name   string
		damage func(t *testing.T, path string)
		want   string
	}{
		{"flipped byte", func(t *testing.T, p string) { flip(t, p, 100) }, "part " + part2 + " is damaged: its sha256 is"},
		{"missing", func(t *testing.T, p string) {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
		}, "part " + part2 + " is missing"},
		{"short", func(t *testing.T, p string) {
			if err := os.Truncate(p, 1000); err != nil {
				t.Fatal(err)
			}
		}, "part " + part2 + " is 1000 bytes, the parts file says 1048576"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "bundle.tar")
			copyFiles(t, split, path)
			tt.damage(t, PartPath(path, 2))
			_, err := Verify(t.Context(), path, VerifyOptions{})
			var ve *VerifyError
			if !errors.As(err, &ve) {
				t.Fatalf("Verify: err = %v, want a *VerifyError", err)
			}
			want := strings.Replace(tt.want, part2, PartPath(path, 2), 1)
			if !strings.Contains(ve.Problems[0].Reason, want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("first problem = %q, want one line with %q", ve.Problems[0].Reason, want)
			}
			for _, p := range ve.Problems {
				if strings.Contains(p.Reason, "part-0001") || strings.Contains(p.Reason, "part-0003") {
					t.Errorf("a good part is named: %q", p.Reason)
				}
			}
		})
	}
	t.Run("open without the parts file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "bundle.tar")
		copyFiles(t, split, path)
		os.Remove(PartsPath(path))
		_, err := Open(PartPath(path, 1))
		if err == nil || !strings.Contains(err.Error(), "copy it beside the parts, or join them with cat "+path+".part-* > "+path) {
			t.Errorf("Open: err = %v, want the parts file asked for", err)
		}
	})
	t.Run("open names a missing part", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "bundle.tar")
		copyFiles(t, split, path)
		os.Remove(PartPath(path, 3))
		_, err := Open(path)
		if !errors.Is(err, ErrPart) || !strings.Contains(err.Error(), PartPath(path, 3)+" is missing") {
			t.Errorf("Open: err = %v, want ErrPart naming %s", err, PartPath(path, 3))
		}
	})
}

// copyFiles copies a split bundle's parts and parts file to another base.
func copyFiles(t *testing.T, from, to string) {
	t.Helper()
	names, _ := filepath.Glob(from + ".part*")
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to+strings.TrimPrefix(n, from), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSplitRerunAndResume(t *testing.T) {
	w, plain, _ := splitWorld(t)
	want, err := os.ReadFile(plain)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "bundle.tar")
	count := func() (*counting, []Entry) {
		c := &counting{}
		return c, wrap(w.fresh(), func(f graph.Fetcher) graph.Fetcher { c.Fetcher = f; return c })
	}
	noParts := func(when string) {
		t.Helper()
		if names, _ := filepath.Glob(path + ".part*"); len(names) > 0 {
			t.Fatalf("%s: parts at their final names already: %v", when, names)
		}
	}

	// Interrupted while fetching: nothing at the final names.
	ctx, cancel := context.WithCancel(t.Context())
	n := 0
	entries := wrap(w.fresh(), func(f graph.Fetcher) graph.Fetcher {
		return &counting{Fetcher: f, after: func(int) {
			if n++; n == 3 {
				cancel()
			}
		}}
	})
	if _, err := Write(ctx, path, entries, Options{Lock: w.lock, Jobs: 1, SplitSize: MinSplitSize}); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted Write: err = %v, want context.Canceled", err)
	}
	noParts("interrupted while fetching")

	// Interrupted while cutting: the rerun fetches nothing.
	ctx, cancel = context.WithCancel(t.Context())
	o := Options{Lock: w.lock, Jobs: 1, SplitSize: MinSplitSize}
	o.hooks.cut = func(n int) {
		if n == 3 {
			cancel()
		}
	}
	st, err := Write(ctx, path, w.fresh(), o)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Write interrupted while cutting: err = %v, want context.Canceled", err)
	}
	if st.Resumed == 0 {
		t.Errorf("the second run resumed nothing: %+v", st)
	}
	noParts("interrupted while cutting")

	c, entries := count()
	st, err = Write(t.Context(), path, entries, Options{Lock: w.lock, Jobs: 1, SplitSize: MinSplitSize})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.blobs) != 0 || st.Unchanged {
		t.Errorf("run after an interrupted cut: fetched %v, unchanged %v; want nothing fetched, not unchanged", c.blobs, st.Unchanged)
	}
	if !bytes.Equal(joined(t, path), want) {
		t.Fatal("the resumed split differs from the unsplit bundle")
	}

	// A rerun over the complete split fetches nothing and writes nothing.
	c, entries = count()
	st, err = Write(t.Context(), path, entries, Options{Lock: w.lock, Jobs: 1, SplitSize: MinSplitSize})
	if err != nil || !st.Unchanged || len(c.blobs) != 0 {
		t.Errorf("rerun: unchanged %v, fetched %v, err %v; want unchanged, nothing fetched", st.Unchanged, c.blobs, err)
	}

	// Another part size replaces the parts, and the old extra ones go.
	if _, err := Write(t.Context(), path, w.fresh(), Options{Lock: w.lock, Jobs: 1, SplitSize: 2 * MinSplitSize}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(joined(t, path), want) {
		t.Fatal("the split at another size differs from the unsplit bundle")
	}
	if _, err := Verify(t.Context(), path, VerifyOptions{}); err != nil {
		t.Errorf("Verify: %v", err)
	}
}

func TestSplitRefusesATinyPart(t *testing.T) {
	w := newWorld(t)
	path := filepath.Join(t.TempDir(), "bundle.tar")
	_, err := Write(t.Context(), path, w.entries, Options{Lock: w.lock, SplitSize: MinSplitSize - 1})
	if err == nil || !strings.Contains(err.Error(), "below the minimum") {
		t.Errorf("err = %v, want a part size below the minimum refused", err)
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  bool
	}{
		{"4GiB", 4 << 30, false},
		{"700MiB", 700 << 20, false},
		{"4.7GB", 4_700_000_000, false},
		{"1048576", 1 << 20, false},
		{"512 KiB", 512 << 10, false},
		{"2TB", 2e12, false},
		{"lots", 0, true},
		{"-1MiB", 0, true},
		{"1e9", 0, true},
		{"", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSize(tt.in)
			if (err != nil) != tt.err || got != tt.want {
				t.Errorf("ParseSize(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.err)
			}
		})
	}
}

// A cut part left by a run for other images is never taken for one of
// this bundle's, even when its size fits.
func TestSplitIgnoresStaleCutParts(t *testing.T) {
	w, plain, _ := splitWorld(t)
	want, err := os.ReadFile(plain)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "bundle.tar")
	n := (len(want) + MinSplitSize - 1) / MinSplitSize
	for i := 1; i <= n; i++ {
		size := min(MinSplitSize, len(want)-(i-1)*MinSplitSize)
		if err := os.WriteFile(cutPath(path, i), bytes.Repeat([]byte{'x'}, size), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Write(t.Context(), path, w.entries, Options{Lock: w.lock, SplitSize: MinSplitSize}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(joined(t, path), want) {
		t.Fatal("stale cut parts went into the split bundle")
	}
}

// Cutting holds at most the bundle and one part more on disk: each part
// is cut off the end of the bundle, which then shrinks.
func TestSplitDiskPeak(t *testing.T) {
	w, plain, _ := splitWorld(t)
	st, err := os.Stat(plain)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "bundle.tar")
	var peak int64
	used := func() {
		var sum int64
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if fi, err := e.Info(); err == nil {
				sum += fi.Size()
			}
		}
		peak = max(peak, sum)
	}
	o := Options{Lock: w.lock, SplitSize: MinSplitSize}
	o.hooks.cut = func(int) { used() }
	o.hooks.sync = func(f *os.File) error { used(); return f.Sync() }
	if _, err := Write(t.Context(), path, w.fresh(), o); err != nil {
		t.Fatal(err)
	}
	if limit := st.Size() + MinSplitSize + 4096; peak > limit || peak <= st.Size() {
		t.Errorf("peak disk use %d bytes, want above the bundle's %d, at most %d", peak, st.Size(), limit)
	}
	t.Logf("peak disk use %d bytes for a bundle of %d in parts of %d", peak, st.Size(), MinSplitSize)
}
