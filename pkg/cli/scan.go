package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/ferry-dev/ferry/pkg/scan"
	"github.com/spf13/cobra"
	"sigs.k8s.io/kustomize/kyaml/yaml"
)

type scanOptions struct {
	root *rootOptions
	in   inputFlags
	out  outputFlag
}

func newScanCmd(root *rootOptions) *cobra.Command {
	o := &scanOptions{root: root}
	cmd := &cobra.Command{
		Use:   "scan -f PATH... [-o text|json|yaml]",
		Short: "List every image reference in manifests, with file, line and YAML path",
		Long: `scan lists the image references ferry would resolve, bundle and rewrite: every
image field of every document, and references that search rules find in container
args (--some-image=REF), env values (*IMAGE*), ConfigMap data and text embedded in it,
a ClusterServiceVersion's containerImage annotation, images written in parts (an image
name beside a version or tag key, Helm image maps: source split, with each part's path)
and a Kustomization's images overrides (source kustomize).
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
	addOutput(cmd, &o.out, []string{formatText, formatJSON, formatYAML}, "")
	return cmd
}

func (o *scanOptions) run(ctx context.Context, cmd *cobra.Command, stdout, stderr io.Writer) error {
	if err := o.in.check(cmd); err != nil {
		return err
	}
	format, err := o.out.parse(cmd, nil)
	if err != nil {
		return err
	}
	so, err := o.in.streamOptions(cmd)
	if err != nil {
		return err
	}
	so.Note = func(n scan.Note) { fmt.Fprintf(stderr, "warning: %s\n", n) }
	w, err := newRefWriter(format, stdout)
	if err != nil {
		return err
	}
	defer w.close()
	err = scan.Each(ctx, o.in.files, so, func(r scan.Ref) error {
		if r.Err != nil {
			fmt.Fprintf(stderr, "warning: %s: %v\n", r.Location(), r.Err)
		}
		return w.add(r)
	})
	if err != nil {
		return err
	}
	return w.finish()
}

// refRow is a scan hit as printed: the reference plus why it is invalid.
type refRow struct {
	scan.Ref `yaml:",inline"`
	Error    string `json:"error,omitempty" yaml:"error,omitempty"`
}

// refWriter prints scan hits as they are found, without holding them: JSON
// and YAML go through a temporary file, and text through a tabwriter (which
// holds only the text), so that a failure part-way prints nothing.
type refWriter struct {
	format string
	stdout io.Writer
	spool  *os.File
	buf    *bufio.Writer
	tw     *tabwriter.Writer
	n      int
}

func newRefWriter(format string, stdout io.Writer) (*refWriter, error) {
	w := &refWriter{format: format, stdout: stdout}
	if format == "text" {
		w.tw = tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w.tw, "LOCATION\tRESOURCE\tPATH\tIMAGE\tSOURCE")
		return w, nil
	}
	f, err := os.CreateTemp("", "ferry-scan-*")
	if err != nil {
		return nil, fmt.Errorf("scanning: a temporary file for the output: %w", err)
	}
	w.spool, w.buf = f, bufio.NewWriterSize(f, 64<<10)
	return w, nil
}

func (w *refWriter) add(r scan.Ref) error {
	row := refRow{Ref: r}
	if r.Err != nil {
		row.Error = r.Err.Error()
	}
	w.n++
	switch w.format {
	case "json":
		// As json.Encoder with SetIndent("", "  ") writes the whole array.
		b, err := json.MarshalIndent(row, "  ", "  ")
		if err != nil {
			return fmt.Errorf("encoding references: %w", err)
		}
		if w.n == 1 {
			w.buf.WriteString("[\n  ")
		} else {
			w.buf.WriteString(",\n  ")
		}
		_, err = w.buf.Write(b)
		return err
	case "yaml":
		b, err := yaml.Marshal([]refRow{row})
		if err != nil {
			return fmt.Errorf("encoding references: %w", err)
		}
		_, err = w.buf.Write(b)
		return err
	}
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
	_, err := fmt.Fprintf(w.tw, "%s\t%s\t%s\t%s\t%s\n", r.Location(), res, r.Path, r.Image, src)
	return err
}

// finish prints what was found.
func (w *refWriter) finish() error {
	if w.tw != nil {
		return w.tw.Flush()
	}
	switch {
	case w.n == 0:
		w.buf.WriteString("[]\n")
	case w.format == "json":
		w.buf.WriteString("\n]\n")
	}
	if err := w.buf.Flush(); err != nil {
		return fmt.Errorf("scanning: writing %s: %w", w.spool.Name(), err)
	}
	if _, err := w.spool.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("scanning: reading back %s: %w", w.spool.Name(), err)
	}
	if _, err := io.Copy(w.stdout, w.spool); err != nil {
		return fmt.Errorf("writing references: %w", err)
	}
	return nil
}

func (w *refWriter) close() {
	if w.spool != nil {
		w.spool.Close()
		os.Remove(w.spool.Name())
	}
}
