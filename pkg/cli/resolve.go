package cli

import (
	"context"
	"io"

	"github.com/ferry-dev/ferry/pkg/lock"
	"github.com/ferry-dev/ferry/pkg/rewrite"
	"github.com/spf13/cobra"
)

type resolveOptions struct {
	root       *rootOptions
	in         inputFlags
	reg        registryFlags
	lockOutput string
	lockFormat string
	output     string
}

func newResolveCmd(root *rootOptions) *cobra.Command {
	o := &resolveOptions{root: root}
	cmd := &cobra.Command{
		Use:   "resolve -f PATH... [--lock-output FILE]",
		Short: "Pin every image reference to its digest and write a lock",
		Long: `resolve finds every image reference in the manifests, asks each registry for the
digest the tag points at (a HEAD request; a GET only for an index, whose platforms
are recorded), prints the manifests with every reference pinned by digest, and
writes the lock that pkg, relocate and rewrite take.`,
		Example: `  # Pin a release and keep the lock
  ferry resolve -f release.yaml --lock-output images.lock.yaml > release.pinned.yaml

  # Pin and apply in one go
  ferry resolve -f k8s/ | kubectl apply -f -

  # Write kbld's lock format instead
  ferry resolve -f release.yaml --lock-output kbld.lock.yml --lock-format kbld > /dev/null`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.Context(), cmd, cmd.OutOrStdout())
		},
	}
	o.in.add(cmd.Flags())
	o.reg.add(cmd.Flags())
	cmd.Flags().StringVar(&o.lockOutput, "lock-output", "", "write the lock to this file")
	cmd.Flags().StringVar(&o.lockFormat, "lock-format", "ferry", "lock format: ferry or kbld")
	cmd.Flags().StringVarP(&o.output, "output", "o", "", "write the pinned manifests to this file instead of stdout")
	return cmd
}

func (o *resolveOptions) run(ctx context.Context, cmd *cobra.Command, stdout io.Writer) error {
	if err := o.in.check(cmd); err != nil {
		return err
	}
	format := lock.Format(o.lockFormat)
	if format != lock.FormatFerry && format != lock.FormatKbld {
		return usageErrorf(cmd, "--lock-format %q: want ferry or kbld", o.lockFormat)
	}
	client, err := o.reg.client(cmd)
	if err != nil {
		return err
	}
	lf, err := o.root.lockFor(ctx, cmd, &o.in, "", client)
	if err != nil {
		return err
	}
	so, err := o.in.scanOptions(cmd)
	if err != nil {
		return err
	}
	if _, err := writeRewritten(ctx, o.in.files, rewrite.Options{Map: pinned(lf), Scan: so}, o.output, stdout); err != nil {
		return err
	}
	if o.lockOutput != "" {
		if err := lf.Write(o.lockOutput, format); err != nil {
			return err
		}
		o.root.log(cmd.ErrOrStderr()).Info("wrote lock", "file", o.lockOutput, "images", len(lf.Images))
	}
	return nil
}

// pinned maps each reference as written to its source pinned by digest.
func pinned(f *lock.File) func(string) (string, bool) {
	m := make(map[string]string, len(f.Images))
	for _, im := range f.Images {
		m[im.Image] = im.Resolved
	}
	return func(s string) (string, bool) {
		v, ok := m[s]
		return v, ok
	}
}
