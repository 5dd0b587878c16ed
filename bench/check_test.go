package main

import (
	"bytes"
	"encoding/json"
	"testing"
)

// mapArtifact holds manifests and blobs by digest; top entries by image name.
type mapArtifact struct {
	tops  map[string][]byte
	blobs map[string][]byte
}

func (m mapArtifact) top(_ int, im image) ([]byte, error) {
	if b, ok := m.tops[im.Name]; ok {
		return b, nil
	}
	return nil, errMissing
}

func (m mapArtifact) manifest(_ int, _ image, d string) ([]byte, error) {
	if b, ok := m.blobs[d]; ok {
		return b, nil
	}
	return nil, errMissing
}

func (m mapArtifact) blobSize(_ int, _ image, d string) (int64, error) {
	if b, ok := m.blobs[d]; ok {
		return int64(len(b)), nil
	}
	return 0, errMissing
}

// fixture builds a set of one single image and one index of two platforms,
// and an artifact holding all of it byte for byte.
func fixture() (*imageSet, mapArtifact) {
	a := mapArtifact{tops: map[string][]byte{}, blobs: map[string][]byte{}}
	put := func(b []byte, mt string) blob {
		d := digestOf(b)
		a.blobs[d] = b
		return blob{Digest: d, Size: int64(len(b)), MediaType: mt}
	}
	mk := func(arch string) manifest {
		cfg := put([]byte(`{"architecture":"`+arch+`"}`), mtOCIConfig)
		l := put([]byte("layer of "+arch), mtOCILayer)
		mb := oddJSON(jsonManifest{SchemaVersion: 2, MediaType: mtDockerManifest, Config: &jsonDesc{Digest: cfg.Digest, Size: cfg.Size}, Layers: []jsonDesc{{Digest: l.Digest, Size: l.Size}}})
		return manifest{blob: put(mb, mtDockerManifest), Platform: "linux/" + arch, Config: cfg, Layers: []blob{l}}
	}
	single := mk("amd64")
	p1, p2 := mk("arm64"), mk("ppc64le")
	ib := oddJSON(jsonManifest{SchemaVersion: 2, MediaType: mtDockerList, Manifests: []jsonDesc{{Digest: p1.Digest, Size: p1.Size}, {Digest: p2.Digest, Size: p2.Size}}})
	idx := put(ib, mtDockerList)
	set := &imageSet{Images: []image{
		{Name: "src/one", Tag: "v1", Top: single.blob, Manif: []manifest{single}},
		{Name: "src/multi", Tag: "v1", Top: idx, IsIndex: true, Manif: []manifest{p1, p2}},
	}}
	a.tops["src/one"] = a.blobs[single.Digest]
	a.tops["src/multi"] = ib
	return set, a
}

// reencode decodes and encodes JSON again, as a converting tool would.
func reencode(t *testing.T, b []byte) []byte {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(v)
	if bytes.Equal(out, b) {
		t.Fatal("re-encoding kept the bytes; the fixture cannot catch it")
	}
	return out
}

func TestCheck(t *testing.T) {
	tests := []struct {
		name        string
		damage      func(t *testing.T, s *imageSet, a mapArtifact)
		wantOK      bool
		wantChanged int
		wantMissing int
		wantBlobs   int
	}{
		{name: "intact", damage: func(*testing.T, *imageSet, mapArtifact) {}, wantOK: true},
		{name: "top manifest re-encoded", damage: func(t *testing.T, s *imageSet, a mapArtifact) {
			a.tops["src/one"] = reencode(t, a.tops["src/one"])
		}, wantChanged: 1},
		{name: "index converted, children gone with it", damage: func(t *testing.T, s *imageSet, a mapArtifact) {
			a.tops["src/multi"] = reencode(t, a.tops["src/multi"])
			for _, m := range s.Images[1].Manif {
				delete(a.blobs, m.Digest)
			}
		}, wantChanged: 3},
		{name: "child manifest rewritten under its digest", damage: func(t *testing.T, s *imageSet, a mapArtifact) {
			d := s.Images[1].Manif[0].Digest
			a.blobs[d] = reencode(t, a.blobs[d])
		}, wantChanged: 1},
		{name: "child missing", damage: func(t *testing.T, s *imageSet, a mapArtifact) {
			delete(a.blobs, s.Images[1].Manif[1].Digest)
		}, wantMissing: 1},
		{name: "image missing", damage: func(t *testing.T, s *imageSet, a mapArtifact) {
			delete(a.tops, "src/one")
		}, wantMissing: 1},
		{name: "layer missing", damage: func(t *testing.T, s *imageSet, a mapArtifact) {
			delete(a.blobs, s.Images[0].Manif[0].Layers[0].Digest)
		}, wantBlobs: 1},
		{name: "layer truncated", damage: func(t *testing.T, s *imageSet, a mapArtifact) {
			d := s.Images[1].Manif[1].Layers[0].Digest
			a.blobs[d] = a.blobs[d][:3]
		}, wantBlobs: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set, a := fixture()
			tt.damage(t, set, a)
			got := check(set, a)
			if got.ok() != tt.wantOK || got.Changed != tt.wantChanged || got.Missing != tt.wantMissing || got.BlobsMissing != tt.wantBlobs {
				t.Errorf("check = %+v (%s), want ok %v, changed %d, missing %d, blobs missing %d", got, got, tt.wantOK, tt.wantChanged, tt.wantMissing, tt.wantBlobs)
			}
			if got.Digests != 4 {
				t.Errorf("checked %d digests, want 4", got.Digests)
			}
		})
	}
}

func TestMedian(t *testing.T) {
	for _, tt := range []struct {
		name string
		in   []float64
		want float64
	}{
		{"empty", nil, 0},
		{"odd", []float64{5, 1, 3}, 3},
		{"even", []float64{4, 1, 3, 2}, 2.5},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := median(tt.in); got != tt.want {
				t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestKeepYAMLSection(t *testing.T) {
	old := "# Performance\n\nold body\n\n" + yamlBegin + "\n## Large YAML\nfigures\n" + yamlEnd + "\n\n### Before\nold figures\n" + yamlHistoryEnd + "\n"
	got := keepYAMLSection("# Performance\n\nnew body\n", old)
	want := "# Performance\n\nnew body\n\n" + yamlBegin + "\n## Large YAML\nfigures\n" + yamlEnd + "\n\n### Before\nold figures\n" + yamlHistoryEnd + "\n"
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	if got := keepYAMLSection("new\n", "no section\n"); got != "new\n" {
		t.Errorf("without a section: %q", got)
	}
}

func TestDeltaNeed(t *testing.T) {
	b := func(d string, n int64) blob { return blob{Digest: d, Size: n} }
	v1s := &imageSet{Images: []image{{Top: b("m1", 10), Manif: []manifest{{blob: b("m1", 10), Config: b("c1", 5), Layers: []blob{b("base", 100), b("app1", 50)}}}}}}
	v2s := &imageSet{Images: []image{{Top: b("m2", 11), Manif: []manifest{{blob: b("m2", 11), Config: b("c2", 6), Layers: []blob{b("base", 100), b("app2", 40)}}}}}}
	newBytes, manifestBytes, newBlobs := deltaNeed(v1s, v2s)
	if newBytes != 46 || manifestBytes != 11 || newBlobs != 2 {
		t.Errorf("deltaNeed = %d new bytes, %d manifest bytes, %d new blobs; want 46, 11, 2", newBytes, manifestBytes, newBlobs)
	}
	// Release 2 shares the base and large layers and rebuilds the medium one.
	r1, r2 := planRelease(1, 0.01, 0, 1), planRelease(1, 0.01, 0, 2)
	same, changed := 0, 0
	for i := range r1 {
		for j := range r1[i].platforms {
			for k, l := range r1[i].platforms[j].layers {
				l2 := r2[i].platforms[j].layers[k]
				if l.size != l2.size {
					t.Fatalf("%s: release 2 changed a layer's size", l.id)
				}
				if l.id == l2.id {
					same++
				} else {
					changed++
				}
			}
		}
	}
	if changed == 0 || same <= changed {
		t.Errorf("release 2 keeps %d layers and rebuilds %d: want most kept", same, changed)
	}
}
