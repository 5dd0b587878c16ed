package workflow

import (
	"fmt"
	"testing"

	"github.com/ferry-dev/ferry/pkg/bundle"
	"github.com/ferry-dev/ferry/pkg/graph"
	"github.com/ferry-dev/ferry/pkg/referrer"
	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func TestKeepArtifacts(t *testing.T) {
	h := func(n int) v1.Hash { return v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%064d", n)} }
	node := func(n int, at string) *graph.Node {
		return &graph.Node{Desc: v1.Descriptor{Digest: h(n), ArtifactType: at}}
	}
	// An index 1 with child 2. Listed deepest first, as a sort by subject
	// digest may have them: 9 signs 8, which attests the child 2.
	root := &graph.Node{Desc: v1.Descriptor{Digest: h(1)}, Children: []*graph.Node{node(2, "")}}
	arts := []bundle.Artifact{
		{Subject: h(8), Kind: referrer.KindSignature, Root: node(9, "")},
		{Subject: h(2), Kind: referrer.KindAttestation, Root: node(8, "")},
		{Subject: h(1), Kind: referrer.KindSignature, Root: node(3, "")},
		{Subject: h(1), Kind: referrer.KindReferrer, Root: node(4, "application/spdx+json")},
		{Subject: h(4), Kind: referrer.KindSignature, Root: node(5, "")},
		// Attached to something not in the image: never kept.
		{Subject: h(7), Kind: referrer.KindSignature, Root: node(6, "")},
	}
	for _, tc := range []struct {
		name  string
		words []string
		want  []int
	}{
		{"all", nil, []int{9, 8, 3, 4, 5, 6}},
		{"signatures", []string{"sig"}, []int{3}},
		{"attestations and signatures", []string{"att", "sig"}, []int{9, 8, 3}},
		{"spdx and signatures", []string{"application/spdx+json", "signature"}, []int{3, 4, 5}},
		{"referrers", []string{"referrer"}, []int{4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := referrer.ParseFilter(tc.words)
			if err != nil {
				t.Fatal(err)
			}
			var got []int
			for _, a := range keepArtifacts(arts, root, f) {
				var n int
				fmt.Sscanf(a.Root.Desc.Digest.Hex, "%d", &n)
				got = append(got, n)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("kept (-want +got):\n%s", diff)
			}
		})
	}
}
