package cli

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/ferry-dev/ferry/pkg/bundle"
	"github.com/ferry-dev/ferry/pkg/lock"
	"github.com/ferry-dev/ferry/pkg/progress"
	"github.com/ferry-dev/ferry/pkg/transfer"
	"github.com/spf13/cobra"
)

type verifyOptions struct {
	root  *rootOptions
	reg   registryFlags
	input string
	lock  string
}

func newVerifyCmd(root *rootOptions) *cobra.Command {
	o := &verifyOptions{root: root}
	cmd := &cobra.Command{
		Use:   "verify (-i BUNDLE.tar | --lock FILE)",
		Short: "Check a bundle's every blob, or that a registry holds every image of a lock",
		Long: `verify -i re-hashes every manifest and blob of a bundle and checks that each image
finds every manifest, config and layer it refers to (non-distributable layers
recorded as left out excepted). Each damaged or missing blob is named on stderr
with the images that need it, and verify exits 1.

verify --lock asks the registry of each lock entry (its relocated location, else the
resolved one) for the manifest, every child manifest and every blob.`,
		Example: `  # Before carrying a bundle in, and again once it is inside
  ferry verify -i bundle.tar

  # After unpkg: is everything in the air-gapped registry?
  ferry verify --lock relocated.lock.yaml`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.Context(), cmd, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	o.reg.add(cmd.Flags())
	cmd.Flags().StringVarP(&o.input, "input", "i", "", "bundle file to check")
	cmd.Flags().StringVar(&o.lock, "lock", "", "lock whose images the registry must hold")
	return cmd
}

func (o *verifyOptions) run(ctx context.Context, cmd *cobra.Command, stdout, stderr io.Writer) error {
	switch {
	case o.input != "" && o.lock != "":
		return usageErrorf(cmd, "give either -i BUNDLE.tar or --lock FILE, not both")
	case o.input == "" && o.lock == "":
		return usageErrorf(cmd, "nothing to verify: pass a bundle with -i BUNDLE.tar or a lock with --lock FILE")
	}
	if o.reg.jobs < 1 {
		return usageErrorf(cmd, "--concurrency must be at least 1, got %d", o.reg.jobs)
	}
	if o.lock != "" {
		client, err := o.reg.client(cmd)
		if err != nil {
			return err
		}
		lf, err := lock.Read(o.lock)
		if err != nil {
			return err
		}
		if err := transfer.Check(ctx, client, lf); err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "%s: the registry holds all %d images\n", o.lock, len(lf.Images))
		return err
	}
	rep, err := checkBundle(ctx, o.input, o.reg.jobs, o.root.progress(stderr), stderr)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s: ok: %d images, %d blobs, %s verified\n", o.input, rep.Images, rep.Blobs, humanBytes(rep.Bytes))
	return err
}

// checkBundle re-hashes every blob of the bundle at path; a damaged one
// has each problem listed on stderr and one error saying what to do. serve
// refuses a bundle with the same words.
func checkBundle(ctx context.Context, path string, jobs int, prog progress.Reporter, stderr io.Writer) (bundle.Report, error) {
	rep, err := bundle.Verify(ctx, path, bundle.VerifyOptions{Jobs: jobs, Progress: prog})
	var ve *bundle.VerifyError
	if errors.As(err, &ve) {
		for _, p := range ve.Problems {
			fmt.Fprintf(stderr, "damaged: %s\n", p)
		}
		return rep, fmt.Errorf("%s: %d damaged or missing blob(s) (listed above): fetch the bundle again, or rerun 'ferry pkg' where the images are reachable", path, len(ve.Problems))
	}
	return rep, err
}
