package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/ferry-dev/ferry/pkg/bundle"
	"github.com/ferry-dev/ferry/pkg/referrer"
	"github.com/spf13/cobra"
)

// supplyChainDefault: signatures, attestations, SBOMs and referrers
// travel unless --supply-chain=false.
const supplyChainDefault = true

func addSupplyChainFlag(cmd *cobra.Command, v *bool) {
	cmd.Flags().BoolVar(v, "supply-chain", supplyChainDefault,
		"carry each image's cosign signatures, attestations and SBOMs (sha256-<hex>.sig/.att/.sbom tags) and OCI referrers, recursively; --supply-chain=false leaves them out")
}

// supplyFlags are --supply-chain and --artifact-type, for the commands
// that find or carry artifacts.
type supplyFlags struct {
	on    bool
	types []string
}

func (f *supplyFlags) add(cmd *cobra.Command) {
	addSupplyChainFlag(cmd, &f.on)
	cmd.Flags().StringArrayVar(&f.types, "artifact-type", nil,
		"of those, only artifacts of this kind, signature (sig), attestation (att), sbom or referrer, or of this artifactType, such as application/spdx+json (repeatable); the artifacts of an artifact left out stay behind too")
	completeWords(cmd, "artifact-type", referrer.KindSignature, referrer.KindAttestation, referrer.KindSBOM, referrer.KindReferrer)
}

// filter reads --artifact-type; with --supply-chain=false it is refused.
func (f *supplyFlags) filter(cmd *cobra.Command) (referrer.Filter, error) {
	if len(f.types) > 0 && !f.on {
		return referrer.Filter{}, usageErrorf(cmd, "--artifact-type picks among the artifacts that --supply-chain=false leaves out: give one or the other")
	}
	ft, err := referrer.ParseFilter(f.types)
	if err != nil {
		return referrer.Filter{}, usageErrorf(cmd, "--artifact-type %v", err)
	}
	return ft, nil
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
