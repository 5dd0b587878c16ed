package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/ferry-dev/ferry/pkg/workflow"
	"github.com/spf13/cobra"
)

type unpkgOptions struct {
	root   *rootOptions
	reg    registryFlags
	target targetFlags
	out    outputFlag
	input  string
	supply supplyFlags
}

func newUnpkgCmd(root *rootOptions) *cobra.Command {
	o := &unpkgOptions{root: root}
	cmd := &cobra.Command{
		Use:   "unpkg -i BUNDLE.tar --repository REG/PATH [--layout path|host|flat] [--lock-output FILE] [-o text|json|yaml]",
		Short: "Push a bundle into a registry, digests unchanged, and write the relocated lock",
		Long: `unpkg pushes every image of a bundle made by 'ferry pkg' into --repository: blobs
streamed from the bundle and checked against their digests on the way, manifests
byte for byte as the source registry served them, children before the indexes that
list them, then the original tags where the layout keeps them. A blob is uploaded
once and mounted into the other repositories that need it; what the registry
already holds is not sent again, so a rerun finishes an interrupted push.

The lock with each image's new location (by digest) is written with --lock-output,
or printed; 'ferry rewrite --lock' applies it to the manifests. The --lock-output
path is checked before anything is pushed. A summary goes to stderr; -o json or
-o yaml prints the result on stdout instead of the lock (see docs/output.md). See
docs/layouts.md for where images land.

A delta bundle (pkg --have) leaves out blobs the target should already hold. Before
anything is pushed, unpkg asks the target for each of them (in the repository that
needs it, or in one it can be mounted from: where the base lock says its images went,
or where the base's images land under this --repository); if any is missing it stops,
pushing nothing, naming the blobs, the images that need them and the base they were
expected from. Keep the lock it writes for the next --have.`,
		Example: `  # Inside the air gap
  ferry unpkg -i bundle.tar --repository registry.internal/mirror --lock-output relocated.lock.yaml
  ferry rewrite -f release.yaml --lock relocated.lock.yaml > release.relocated.yaml

  # A registry without TLS, every image in one repository
  ferry unpkg -i bundle.tar --repository 10.0.0.5:5000/all --layout flat --insecure-registry 10.0.0.5:5000 > relocated.lock.yaml

  # What was pushed, for a script
  ferry unpkg -i bundle.tar --repository registry.internal/mirror --lock-output relocated.lock.yaml -o json | jq .blobsUploaded`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.Context(), cmd, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVarP(&o.input, "input", "i", "", "bundle file made by 'ferry pkg', or a split bundle's base name or first part (required)")
	o.target.add(cmd.Flags())
	o.target.complete(cmd)
	o.reg.add(cmd.Flags())
	addOutput(cmd, &o.out, []string{formatText, formatJSON, formatYAML}, "")
	o.supply.add(cmd)
	return cmd
}

func (o *unpkgOptions) run(ctx context.Context, cmd *cobra.Command, stdout, stderr io.Writer) error {
	if o.input == "" {
		return usageErrorf(cmd, "no bundle: pass -i BUNDLE.tar")
	}
	format, err := o.out.parse(cmd, nil)
	if err != nil {
		return err
	}
	ro, lockFormat, err := o.target.options(cmd, o.reg.jobs)
	if err != nil {
		return err
	}
	filter, err := o.supply.filter(cmd)
	if err != nil {
		return err
	}
	client, err := o.reg.client(cmd)
	if err != nil {
		return err
	}
	ro.Progress = o.root.progress(stderr)
	out, res, err := workflow.Unpkg(ctx, client, o.input, workflow.RelocateOptions{RelocateOptions: ro, SupplyChain: o.supply.on, ArtifactTypes: filter})
	if err != nil {
		return explain(err)
	}
	if res.TrailingBytes > 0 {
		o.root.log(stderr).Warn(trailingWarning(o.input, res.TrailingBytes))
	}
	if res.ArtifactsLeftOut > 0 {
		why := "--supply-chain=false: drop the flag"
		if o.supply.on {
			why = "--artifact-type: widen or drop it"
		}
		o.root.log(stderr).Warn(fmt.Sprintf("the bundle carries %s left out by %s to push them", plural(res.ArtifactsLeftOut, "signature, attestation, SBOM or referrer"), why))
	}
	return o.target.finish(o.root, out, res, lockFormat, format, nil, stdout, stderr)
}

// trailingWarning says that a bundle is longer than its tar archive, and
// that its images are read all the same.
func trailingWarning(path string, n int64) string {
	return fmt.Sprintf("%s has %d bytes after the end of the tar archive: the file is not exactly what was written (appended to, or copied over a longer file); they are ignored, every blob is still checked against its digest; 'ferry verify -i' refuses such a file", path, n)
}
