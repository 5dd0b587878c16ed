package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/ferry-dev/ferry/pkg/scan"
	"github.com/spf13/cobra"
	"sigs.k8s.io/kustomize/kyaml/yaml"
)

type scanOptions struct {
	root   *rootOptions
	in     inputFlags
	output string
}

func newScanCmd(root *rootOptions) *cobra.Command {
	o := &scanOptions{root: root}
	cmd := &cobra.Command{
		Use:   "scan -f PATH... [-o text|json|yaml]",
		Short: "List every image reference in manifests, with file, line and YAML path",
		Long: `scan lists the image references ferry would resolve, bundle and rewrite: every
image field of every document, and references that search rules find in container
args (--some-image=REF), env values (*IMAGE*), ConfigMap data and text embedded in it.
Templates ({{ }}, $(...)), wildcards and CRD schemas are not references.
An image field that is no valid reference is listed, with a warning on stderr.
Add search rules for other places with --config (see docs/config.md).`,
		Example: `  # What does this release pull?
  ferry scan -f release.yaml

  # Every manifest under a directory, as JSON, unique images only
  ferry scan -f deploy/ -o json | jq -r '.[].image' | sort -u

  # From a Helm chart, with extra search rules
  helm template my-release ./chart | ferry scan -f - --config ferry.yaml`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.Context(), cmd, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	o.in.add(cmd.Flags())
	cmd.Flags().StringVarP(&o.output, "output", "o", "text", "output format: text, json or yaml")
	return cmd
}

func (o *scanOptions) run(ctx context.Context, cmd *cobra.Command, stdout, stderr io.Writer) error {
	if err := o.in.check(cmd); err != nil {
		return err
	}
	if o.output != "text" && o.output != "json" && o.output != "yaml" {
		return usageErrorf(cmd, "-o %q: want text, json or yaml", o.output)
	}
	so, err := o.in.streamOptions(cmd)
	if err != nil {
		return err
	}
	refs, err := scan.Scan(ctx, o.in.files, so)
	if err != nil {
		return err
	}
	for _, r := range refs {
		if r.Err != nil {
			fmt.Fprintf(stderr, "warning: %s: %v\n", r.Location(), r.Err)
		}
	}
	return writeRefs(stdout, o.output, refs)
}

// refRow is a scan hit as printed: the reference plus why it is invalid.
type refRow struct {
	scan.Ref `yaml:",inline"`
	Error    string `json:"error,omitempty" yaml:"error,omitempty"`
}

func writeRefs(w io.Writer, format string, refs []scan.Ref) error {
	rows := make([]refRow, len(refs))
	for i, r := range refs {
		rows[i] = refRow{Ref: r}
		if r.Err != nil {
			rows[i].Error = r.Err.Error()
		}
	}
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
	case "yaml":
		if len(rows) == 0 {
			_, err := io.WriteString(w, "[]\n")
			return err
		}
		b, err := yaml.Marshal(rows)
		if err != nil {
			return fmt.Errorf("encoding references: %w", err)
		}
		_, err = w.Write(b)
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "LOCATION\tRESOURCE\tPATH\tIMAGE\tSOURCE")
	for _, r := range rows {
		res := r.Kind
		if r.Name != "" {
			res += "/" + r.Name
		}
		if res == "" {
			res = "-"
		}
		src := r.Source
		if r.Err != nil {
			src += " (invalid)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Location(), res, r.Path, r.Image, src)
	}
	return tw.Flush()
}
