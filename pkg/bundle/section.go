package bundle

import (
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Section is the stored bytes of blob or manifest h, unchecked, for a
// server that verified the bundle once and then serves byte ranges of it
// (a ranged read cannot be checked against a digest). Each call gives an
// independent reader; false when the bundle does not hold h.
func (r *Reader) Section(h v1.Hash) (*io.SectionReader, bool) {
	s, ok := r.blobs[h]
	if !ok {
		return nil, false
	}
	return io.NewSectionReader(r.f, s.off, s.size), true
}
