package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/ferry-dev/ferry/pkg/bundle"
	"github.com/spf13/cobra"
)

type inspectOptions struct {
	root  *rootOptions
	input string
	out   outputFlag
}

func newInspectCmd(root *rootOptions) *cobra.Command {
	o := &inspectOptions{root: root}
	cmd := &cobra.Command{
		Use:   "inspect -i BUNDLE.tar [-o text|json|yaml]",
		Short: "Show what a bundle holds: images, platforms, sizes, shared bytes",
		Long: `inspect lists a bundle's images with their digests, media types, platforms and
sizes, and how many bytes storing shared blobs once saved. It reads the manifests
(checking each) but not the layers: 'ferry verify -i' re-hashes everything. A delta
bundle (pkg --have) ends with a line "delta: N blobs (SIZE) expected at the target"
naming its bases; -o json carries them as "delta".`,
		Example: `  ferry inspect -i bundle.tar

  # Digests of every image, for a script
  ferry inspect -i bundle.tar -o json | jq -r '.images[] | .name + " " + .digest'`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.Context(), cmd, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVarP(&o.input, "input", "i", "", "bundle file to inspect, or a split bundle's base name or first part (required)")
	addOutput(cmd, &o.out, []string{formatText, formatJSON, formatYAML}, "")
	return cmd
}

func (o *inspectOptions) run(_ context.Context, cmd *cobra.Command, stdout, stderr io.Writer) error {
	if o.input == "" {
		return usageErrorf(cmd, "no bundle: pass it with -i BUNDLE.tar")
	}
	format, err := o.out.parse(cmd, nil)
	if err != nil {
		return err
	}
	s, err := bundle.Inspect(o.input)
	if err != nil {
		return err
	}
	if s.TrailingBytes > 0 {
		o.root.log(stderr).Warn(trailingWarning(o.input, s.TrailingBytes))
	}
	if format != formatText {
		return printResult(stdout, format, s)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "IMAGE\tDIGEST\tTYPE\tPLATFORMS\tSIZE")
	for _, im := range s.Images {
		var plats []string
		for _, p := range im.Platforms {
			name := p.Platform
			if name == "" {
				name = "unknown"
			}
			plats = append(plats, name)
		}
		kind := "image"
		if strings.Contains(im.MediaType, "index") || strings.Contains(im.MediaType, "list") {
			kind = "index"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", im.Name, im.Digest, kind, strings.Join(plats, ","), humanBytes(im.Size))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if err := printArtifactTrees(stdout, s.Images); err != nil {
		return err
	}
	file := "bundle file " + humanBytes(s.FileSize)
	if s.Parts != nil {
		file = fmt.Sprintf("bundle %s in %s of at most %s", humanBytes(s.FileSize), plural(len(s.Parts.Parts), "part"), humanBytes(s.Parts.PartSize))
	}
	_, err = fmt.Fprintf(stdout, "\n%s, %s in total, %s stored (%s shared across images), %s\n",
		plural(len(s.Images), "image"), humanBytes(s.TotalBytes), humanBytes(s.UniqueBytes), humanBytes(s.SharedBytes), file)
	if err != nil || s.Delta == nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "delta: %s (%s) expected at the target, from %s\n", plural(s.Delta.Blobs, "blob"), humanBytes(s.Delta.Bytes), deltaBases(s.Delta.Bases))
	return err
}

// deltaBases names what a delta was made against.
func deltaBases(bs []bundle.DeltaBase) string {
	names := make([]string, len(bs))
	for i, b := range bs {
		names[i] = b.String()
	}
	if len(names) == 0 {
		return "no base"
	}
	return strings.Join(names, ", ")
}
