package referrer

import (
	"errors"
	"fmt"
	"mime"
	"slices"
	"strings"
)

// Filter picks the artifacts that travel, by kind (signature,
// attestation, sbom, referrer) or by artifactType (a media type such as
// application/spdx+json); an artifact travels when it matches one of
// them. The zero Filter keeps every artifact.
type Filter struct {
	kinds []string
	types []string
}

// ErrFilter is returned by ParseFilter for a word that is neither a kind
// nor a media type.
var ErrFilter = errors.New("not an artifact kind or media type")

// kindAliases are cosign's tag suffixes, accepted for the kinds they name.
var kindAliases = map[string]string{"sig": KindSignature, "att": KindAttestation}

// ParseFilter reads the words of --artifact-type: a kind (or cosign's
// suffix sig or att), or a media type.
func ParseFilter(words []string) (Filter, error) {
	var f Filter
	for _, w := range words {
		w = strings.TrimSpace(w)
		lw := strings.ToLower(w)
		if k, ok := kindAliases[lw]; ok {
			lw = k
		}
		switch {
		case slices.Contains([]string{KindSignature, KindAttestation, KindSBOM, KindReferrer}, lw):
			if !slices.Contains(f.kinds, lw) {
				f.kinds = append(f.kinds, lw)
			}
		case strings.Contains(w, "/"):
			if _, _, err := mime.ParseMediaType(w); err != nil {
				return Filter{}, fmt.Errorf("%q: %w: %w", w, ErrFilter, err)
			}
			f.types = append(f.types, w)
		default:
			return Filter{}, fmt.Errorf("%q: %w: want signature (sig), attestation (att), sbom, referrer or a media type such as application/spdx+json", w, ErrFilter)
		}
	}
	return f, nil
}

// Words are f's kinds and media types, canonical (aliases resolved, media
// types in lower case) and sorted, as a lock records them; nil for the
// zero Filter.
func (f Filter) Words() []string {
	var out []string
	out = append(out, f.kinds...)
	for _, t := range f.types {
		out = append(out, strings.ToLower(t))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// All reports whether f keeps every artifact.
func (f Filter) All() bool { return len(f.kinds) == 0 && len(f.types) == 0 }

// Keep reports whether an artifact of this kind and artifactType travels.
// A media type matches the artifactType exactly, ignoring case.
func (f Filter) Keep(kind, artifactType string) bool {
	if f.All() || slices.Contains(f.kinds, kind) {
		return true
	}
	return artifactType != "" && slices.ContainsFunc(f.types, func(t string) bool { return strings.EqualFold(t, artifactType) })
}

// kindOnly reports whether only kinds are named: an artifact's kind then
// decides before its manifest is fetched.
func (f Filter) kindOnly() bool { return len(f.types) == 0 }
