package testutil

import (
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Attached is one artifact of a Signed set and what it is attached to.
type Attached struct {
	Artifact Fixture
	// Subject is the digest it is attached to.
	Subject string
	// Kind is signature, attestation, sbom or referrer.
	Kind string
	// Tag is its cosign tag; empty for a referrer.
	Tag string
}

// Signed is a small set of images with supply-chain artifacts, made as
// cosign and oras make them (but without their keys: the payloads are
// fixed bytes).
type Signed struct {
	// Index is signed/app:v1, an OCI index of linux/amd64 and linux/arm64.
	Index Fixture
	// Image is signed/tool:v1, a plain OCI image.
	Image Fixture
	// Attached lists every artifact: the index's signature, attestation
	// (itself signed) and SBOM referrer; the amd64 child's signature; the
	// image's signature and a referrer.
	Attached []Attached
}

// All returns the top-level images of s.
func (s Signed) All() []Fixture { return []Fixture{s.Index, s.Image} }

// SignedSet pushes the Signed set to reg.
func SignedSet(t testing.TB, reg *Registry) Signed {
	t.Helper()
	img := func(p v1.Platform, seed uint64) ImageSpec {
		return ImageSpec{OCI: true, Platform: p, Layers: []v1.Layer{RandomLayer(seed, 16<<10)}}
	}
	var s Signed
	s.Index = PushIndex(t, reg, "signed/app", "v1", IndexSpec{OCI: true, Images: []ImageSpec{
		img(v1.Platform{OS: "linux", Architecture: "amd64"}, 101),
		img(v1.Platform{OS: "linux", Architecture: "arm64"}, 102),
	}})
	s.Image = PushImage(t, reg, "signed/tool", "v1", img(v1.Platform{OS: "linux", Architecture: "amd64"}, 103))

	add := func(repo string, subject Fixture, kind, suffix string, referrer bool, payload string) Fixture {
		spec := ArtifactSpec{Payload: []byte(payload)}
		a := Attached{Subject: subject.Digest, Kind: kind}
		if referrer {
			spec.Subject = &subject
			spec.ArtifactType = "application/spdx+json"
			spec.PayloadType = "application/spdx+json"
		} else {
			a.Tag = CosignTag(subject.Digest, suffix)
			spec.Tag = a.Tag
		}
		a.Artifact = PushArtifact(t, reg, repo, spec)
		s.Attached = append(s.Attached, a)
		return a.Artifact
	}
	add("signed/app", s.Index, "signature", ".sig", false, `{"signed":"index"}`)
	att := add("signed/app", s.Index, "attestation", ".att", false, `{"attested":"index"}`)
	add("signed/app", att, "signature", ".sig", false, `{"signed":"attestation"}`)
	add("signed/app", s.Index, "referrer", "", true, `{"spdx":"index"}`)
	add("signed/app", s.Index.Children[0], "signature", ".sig", false, `{"signed":"amd64"}`)
	add("signed/tool", s.Image, "signature", ".sig", false, `{"signed":"tool"}`)
	add("signed/tool", s.Image, "referrer", "", true, `{"spdx":"tool"}`)
	return s
}
