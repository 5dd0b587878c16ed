package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/ferry-dev/ferry/pkg/bundle"
	"github.com/spf13/cobra"
)

// supplyChainDefault: signatures, attestations, SBOMs and referrers
// travel unless --supply-chain=false.
const supplyChainDefault = true

func addSupplyChainFlag(cmd *cobra.Command, v *bool) {
	cmd.Flags().BoolVar(v, "supply-chain", supplyChainDefault,
		"carry each image's cosign signatures, attestations and SBOMs (sha256-<hex>.sig/.att/.sbom tags) and OCI referrers, recursively; --supply-chain=false leaves them out")
}

// printArtifactTrees shows, under each image that has any, its
// signatures, attestations, SBOMs and referrers, each artifact's own below
// it, as 'cosign tree' does.
func printArtifactTrees(w io.Writer, images []bundle.ImageSummary) error {
	var print func(as []bundle.ArtifactSummary, depth int, image string) error
	print = func(as []bundle.ArtifactSummary, depth int, image string) error {
		for _, a := range as {
			line := fmt.Sprintf("%s└─ %s %s", strings.Repeat("   ", depth), a.Kind, a.Digest)
			if a.Tag != "" {
				line += " tag " + a.Tag
			}
			if a.ArtifactType != "" {
				line += " type " + a.ArtifactType
			}
			if depth == 0 && a.Subject != image {
				line += " (of platform " + a.Subject + ")"
			}
			if _, err := fmt.Fprintln(w, line); err != nil {
				return err
			}
			if err := print(a.Artifacts, depth+1, image); err != nil {
				return err
			}
		}
		return nil
	}
	for _, im := range images {
		if len(im.Artifacts) == 0 {
			continue
		}
		if _, err := fmt.Fprintf(w, "\n%s\n", im.Name); err != nil {
			return err
		}
		if err := print(im.Artifacts, 0, im.Digest); err != nil {
			return err
		}
	}
	return nil
}
