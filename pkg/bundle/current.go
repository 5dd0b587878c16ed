package bundle

import (
	"bytes"
	"context"

	"github.com/ferry-dev/ferry/pkg/lock"
)

// Current reports whether path already holds the complete bundle of lf,
// judged without a registry: a bundle's content is fixed by the digests its
// lock pins, so when the lock stored in the bundle is lf (with the foreign
// layers left out as includeNonDistributable asks), a run would write the
// same bytes again. A rerun of pkg over a finished bundle then costs no
// round trip at all. The bundle's structure is checked as well (every
// image of the lock in index.json, every manifest and blob present with
// its size); blobs are not re-hashed, as a bundle reaches its final path
// only once each was checked. Any doubt (no file, not a bundle, another
// lock, something missing) is false: the caller plans and compares as usual.
func Current(ctx context.Context, path string, lf *lock.File, includeNonDistributable bool) bool {
	r, err := Open(path)
	if err != nil {
		return false
	}
	defer r.Close()
	stored := r.Lock()
	if stored == nil || lf == nil || len(stored.Images) != len(lf.Images) {
		return false
	}
	want := *lf
	want.Images = append([]lock.Image(nil), lf.Images...)
	for i := range want.Images {
		// What pkg records itself: the foreign layers it left out, which
		// the digests determine.
		want.Images[i].NonDistributable = nil
		if !includeNonDistributable {
			want.Images[i].NonDistributable = stored.Images[i].NonDistributable
		}
	}
	var a, b bytes.Buffer
	if want.Encode(&a, lock.FormatFerry) != nil || stored.Encode(&b, lock.FormatFerry) != nil || !bytes.Equal(a.Bytes(), b.Bytes()) {
		return false
	}
	entries := map[string]Ref{}
	for _, ref := range r.Entries() {
		entries[ref.Name] = ref
	}
	for _, im := range lf.Images {
		ref, ok := entries[im.Image]
		if !ok || ref.Desc.Digest.String() != im.Digest {
			return false
		}
		root, err := r.Walk(ctx, ref)
		if err != nil {
			return false
		}
		for _, m := range root.Manifests() {
			for _, d := range m.Blobs {
				if size, ok := r.Has(d.Digest); !ok || size != d.Size {
					return false
				}
				if !includeNonDistributable && !d.MediaType.IsDistributable() {
					return false // a foreign layer this run would leave out
				}
			}
			if includeNonDistributable && len(m.Skipped) > 0 {
				return false
			}
		}
	}
	return true
}
