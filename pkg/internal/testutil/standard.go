package testutil

import (
	"slices"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// DefaultLargeLayerSize is StandardSet's large layer when none is given:
// big enough to span several upload chunks, small enough for every run.
const DefaultLargeLayerSize = 8 << 20

// Standard is the hard set of images every copy path must keep
// byte-identical. The repository of each is in its field's comment.
type Standard struct {
	// OCIIndex is tekton/controller:v0.50: an oddly formatted OCI index of
	// linux/amd64, linux/arm64 and linux/arm/v7 images, themselves odd.
	OCIIndex Fixture
	// ManifestList is library/nginx:1.25: an oddly formatted Docker
	// manifest list of linux/amd64 and linux/arm64 schema2 images.
	ManifestList Fixture
	// Nested is nested/index:v1: an OCI index whose only child is another
	// OCI index of two images.
	Nested Fixture
	// Shared are team/api:v1, team/web:v1 and tools/cli:v1, mixing schema2
	// and OCI, with the same two base layers below one layer of their own,
	// so blobs repeat across repositories.
	Shared []Fixture
	// ConfigOnly is empty/config:v1: an OCI image with no layers.
	ConfigOnly Fixture
	// Large is big/blob:v1: a schema2 image with one large random layer.
	Large Fixture
}

// All returns every top-level fixture of s.
func (s Standard) All() []Fixture {
	return slices.Concat([]Fixture{s.OCIIndex, s.ManifestList, s.Nested}, s.Shared, []Fixture{s.ConfigOnly, s.Large})
}

// StandardSet pushes the standard set to reg. largeSize is the size of the
// large layer in bytes; zero means DefaultLargeLayerSize. Everything is
// deterministic, so two registries given the same set hold the same digests.
func StandardSet(t testing.TB, reg *Registry, largeSize int64) Standard {
	t.Helper()
	if largeSize <= 0 {
		largeSize = DefaultLargeLayerSize
	}
	amd64 := v1.Platform{OS: "linux", Architecture: "amd64"}
	arm64 := v1.Platform{OS: "linux", Architecture: "arm64"}
	armv7 := v1.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}
	// Each platform gets a layer of its own so children differ in blobs
	// as well as in config.
	img := func(oci bool, p v1.Platform, seed uint64) ImageSpec {
		return ImageSpec{
			OCI:      oci,
			Platform: p,
			Layers:   []v1.Layer{TarLayer("etc/arch", []byte(p.Architecture+p.Variant)), RandomLayer(seed, 64<<10)},
			Odd:      true,
		}
	}

	var s Standard
	s.OCIIndex = PushIndex(t, reg, "tekton/controller", "v0.50", IndexSpec{
		OCI:    true,
		Images: []ImageSpec{img(true, amd64, 1), img(true, arm64, 2), img(true, armv7, 3)},
		Odd:    true,
	})
	s.ManifestList = PushIndex(t, reg, "library/nginx", "1.25", IndexSpec{
		Images: []ImageSpec{img(false, amd64, 4), img(false, arm64, 5)},
		Odd:    true,
	})
	s.Nested = PushIndex(t, reg, "nested/index", "v1", IndexSpec{
		OCI: true,
		Indexes: []IndexSpec{{
			OCI:    true,
			Images: []ImageSpec{img(true, amd64, 6), img(true, arm64, 7)},
		}},
		Odd: true,
	})

	base := []v1.Layer{
		TarLayer("etc/os-release", []byte("ID=ferry-base\n")),
		RandomLayer(100, 256<<10),
	}
	for i, repo := range []string{"team/api", "team/web", "tools/cli"} {
		own := TarLayer("app/name", []byte(repo))
		s.Shared = append(s.Shared, PushImage(t, reg, repo, "v1", ImageSpec{
			OCI:    i == 2,
			Layers: append(append([]v1.Layer(nil), base...), own),
		}))
	}

	s.ConfigOnly = PushImage(t, reg, "empty/config", "v1", ImageSpec{OCI: true, Odd: true})
	s.Large = PushImage(t, reg, "big/blob", "v1", ImageSpec{Layers: []v1.Layer{RandomLayer(200, largeSize)}})
	return s
}
