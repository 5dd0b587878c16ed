package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/ferry-dev/ferry/pkg/lock"
	"github.com/ferry-dev/ferry/pkg/rewrite"
	"github.com/ferry-dev/ferry/pkg/scan"
	"github.com/spf13/cobra"
)

type rewriteOptions struct {
	root    *rootOptions
	in      inputFlags
	out     outputFlag
	lock    string
	output  string
	inPlace bool
	strict  bool
}

func newRewriteCmd(root *rootOptions) *cobra.Command {
	o := &rewriteOptions{root: root}
	cmd := &cobra.Command{
		Use:   "rewrite -f PATH... --lock FILE [--output-file FILE | --in-place] [--strict]",
		Short: "Point every image reference at its location in a lock",
		Long: `rewrite replaces each image reference that scan finds by the lock's location for
it (relocated, else resolved, always by digest), and changes nothing else: comments,
key order, quoting, indentation, flow lists and JSON stay byte for byte as they were.
Inside values such as --flag=REF or version=REF lines only the reference changes.
The inputs are printed as one YAML stream, written to --output-file, or written
back with --in-place.
References missing from the lock are left as they are, with a warning; --strict
makes that an error, before anything is written.`,
		Example: `  # After unpkg: point a release at the air-gapped registry
  ferry rewrite -f release.yaml --lock relocated.lock.yaml > release.relocated.yaml

  # The same, written to a file (atomically: all or nothing)
  ferry rewrite -f release.yaml --lock relocated.lock.yaml --output-file release.relocated.yaml

  # Rewrite a directory of manifests where they are, failing on any unlocked image
  ferry rewrite -f deploy/ --lock images.lock.yaml --in-place --strict

  # In a pipeline
  helm template my-release ./chart | ferry rewrite -f - --lock images.lock.yaml | kubectl apply -f -`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.Context(), cmd, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	o.in.add(cmd.Flags())
	cmd.Flags().StringVar(&o.lock, "lock", "", "lock file giving each reference's new location (ferry's, kbld's or imgpkg's)")
	cmd.Flags().StringVar(&o.output, "output-file", "", "write the rewritten manifests to this file instead of stdout")
	addOutput(cmd, &o.out, nil, "--output-file")
	cmd.Flags().BoolVar(&o.inPlace, "in-place", false, "rewrite each input file where it is")
	cmd.Flags().BoolVar(&o.strict, "strict", false, "fail when a reference has no lock entry")
	return cmd
}

func (o *rewriteOptions) run(ctx context.Context, cmd *cobra.Command, stdout, stderr io.Writer) error {
	if err := o.in.check(cmd); err != nil {
		return err
	}
	if _, err := o.out.parse(cmd, &o.output); err != nil {
		return err
	}
	switch {
	case o.lock == "":
		return usageErrorf(cmd, "no lock: pass --lock FILE (from resolve, unpkg or relocate)")
	case o.output != "" && o.inPlace:
		return usageErrorf(cmd, "--output-file and --in-place do not go together: choose one")
	case o.inPlace && slices.Contains(o.in.files, scan.Stdin):
		return usageErrorf(cmd, "--in-place cannot rewrite stdin (-f -): use --output-file FILE or stdout")
	}
	if err := checkWritable("--output-file", o.output); err != nil {
		return err
	}
	lf, err := lock.Read(o.lock)
	if err != nil {
		return err
	}
	so, err := o.in.streamOptions(cmd)
	if err != nil {
		return err
	}
	ro := rewrite.Options{Map: locations(lf), Scan: so, Strict: o.strict}
	var res rewrite.Result
	if o.inPlace {
		res, err = rewrite.InPlace(ctx, o.in.files, ro)
	} else {
		res, err = writeRewritten(ctx, o.in.files, ro, o.output, stdout, func() error { return nil })
	}
	var ue *rewrite.UnmappedError
	if errors.As(err, &ue) {
		return fmt.Errorf("%w; run ferry resolve -f ... --lock-output %s to add them", err, o.lock)
	}
	if err != nil {
		return err
	}
	warnUnmapped(stderr, res.Unmapped, o.lock)
	warnLeft(stderr, res.Left)
	o.root.log(stderr).Debug("rewrote", "references", res.Rewritten, "files changed", len(res.Changed))
	o.out.notice(stderr)
	return nil
}

// warnLeft says, one line per site, which references written in parts a
// rewrite left as written, and why (rewrite, relocate and resolve alike).
func warnLeft(stderr io.Writer, left []string) {
	for _, l := range left {
		fmt.Fprintf(stderr, "warning: %s\n", l)
	}
}

// warnUnmapped warns about the first few references without a lock entry,
// once each, and counts the rest in one line.
func warnUnmapped(stderr io.Writer, unmapped []scan.Ref, lockPath string) {
	seen := map[string]bool{}
	for _, r := range unmapped {
		if seen[r.Image] {
			continue
		}
		seen[r.Image] = true
		if len(seen) <= rewrite.MaxListed {
			fmt.Fprintf(stderr, "warning: %s: %s has no lock entry in %s; left as written\n", r.Location(), scan.Quote(r.Image), lockPath)
		}
	}
	if more := len(seen) - rewrite.MaxListed; more > 0 {
		fmt.Fprintf(stderr, "warning: %d more references have no lock entry in %s; left as written (--strict lists the first of them and fails)\n", more, lockPath)
	}
}

// locations maps each reference as written to where the lock says it is now.
func locations(f *lock.File) func(string) (string, bool) {
	m := make(map[string]string, len(f.Images))
	for _, im := range f.Images {
		if loc := im.Location(); loc != "" {
			m[im.Image] = loc
		}
	}
	return func(s string) (string, bool) {
		v, ok := m[s]
		return v, ok
	}
}
