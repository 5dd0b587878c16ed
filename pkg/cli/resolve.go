package cli

import (
	"context"
	"io"

	"github.com/ferry-dev/ferry/pkg/lock"
	"github.com/ferry-dev/ferry/pkg/rewrite"
	"github.com/ferry-dev/ferry/pkg/scan"
	"github.com/ferry-dev/ferry/pkg/workflow"
	"github.com/spf13/cobra"
)

type resolveOptions struct {
	root       *rootOptions
	in         inputFlags
	reg        registryFlags
	out        outputFlag
	lockOutput string
	lockFormat string
	outputFile string
	supply     supplyFlags
}

func newResolveCmd(root *rootOptions) *cobra.Command {
	o := &resolveOptions{root: root}
	cmd := &cobra.Command{
		Use:   "resolve (-f PATH... | REF... | --images-file FILE) [--lock-output FILE] [--output-file FILE] [-o text|json|yaml]",
		Short: "Pin every image reference to its digest and write a lock",
		Long: `resolve finds every image reference in the manifests (and takes those given as
arguments or with --images-file), asks each registry for the digest the tag points at
(a HEAD request; a GET only for an index, whose platforms are recorded), prints the
manifests with every reference pinned by digest (or writes them with --output-file),
and writes the lock that pkg, relocate and rewrite take with --lock-output.

The lock also records, per image, the cosign signatures, attestations and SBOMs and
the OCI referrers attached to it and to each of its platforms (see
docs/supply-chain.md): one tag list per repository and one referrers lookup per
manifest. --artifact-type keeps some of them; --supply-chain=false records none and
asks the registries for the digests only. kbld's lock format has no place for them.

-o json or -o yaml prints the lock entries instead of the manifests: -o yaml is a
lock file in --lock-format, -o json the same entries as JSON (see docs/output.md).
With references only and no -f there are no manifests to pin: the lock is printed,
as with -o yaml. Output paths are checked before any registry is asked, and nothing
reaches stdout or --output-file unless the lock was written.`,
		Example: `  # Pin a release and keep the lock
  ferry resolve -f release.yaml --lock-output images.lock.yaml --output-file release.pinned.yaml

  # Pin and apply in one go
  ferry resolve -f k8s/ | kubectl apply -f -

  # A lock for images named on the command line or in a list
  ferry resolve nginx:1.25 quay.io/org/app:v1 > images.lock.yaml
  ferry resolve --images-file images.txt -o json | jq -r '.images[].resolved'

  # Record only the signatures and SPDX SBOMs found with each image
  ferry resolve -f release.yaml --lock-output images.lock.yaml --artifact-type signature --artifact-type application/spdx+json > /dev/null

  # Write kbld's lock format instead
  ferry resolve -f release.yaml --lock-output kbld.lock.yml --lock-format kbld > /dev/null`,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.in.args(args)
			return o.run(cmd.Context(), cmd, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	o.in.add(cmd.Flags())
	o.in.addImages(cmd.Flags())
	o.reg.add(cmd.Flags())
	o.supply.add(cmd)
	cmd.Flags().StringVar(&o.lockOutput, "lock-output", "", "write the lock to this file")
	cmd.Flags().StringVar(&o.lockFormat, "lock-format", "ferry", "lock format: ferry or kbld")
	cmd.Flags().StringVar(&o.outputFile, "output-file", "", "write the pinned manifests to this file instead of stdout")
	addOutput(cmd, &o.out, []string{formatText, formatJSON, formatYAML}, "--output-file")
	completeWords(cmd, "lock-format", string(lock.FormatFerry), string(lock.FormatKbld))
	return cmd
}

func (o *resolveOptions) run(ctx context.Context, cmd *cobra.Command, stdout, stderr io.Writer) error {
	format, lockFormat, err := o.check(cmd)
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
	lf, err := o.root.lockFor(ctx, cmd, &o.in, "", client)
	if err != nil {
		return err
	}
	// kbld's lock cannot hold them: not looked for unless printed as JSON.
	if o.supply.on && (lockFormat != lock.FormatKbld || format == formatJSON) {
		if err := workflow.FindArtifacts(ctx, client, lf, workflow.ArtifactsOptions{ArtifactTypes: filter}); err != nil {
			return err
		}
	}
	// The lock is written before anything reaches stdout or --output-file.
	writeLock := func() error {
		if o.lockOutput == "" {
			return nil
		}
		if err := lf.Write(o.lockOutput, lockFormat); err != nil {
			return err
		}
		o.root.say(stderr, "wrote %s: %s", o.lockOutput, plural(len(lf.Images), "image"))
		return nil
	}
	switch {
	case format == formatJSON:
		err = printAfter(writeLock, func() error { return printResult(stdout, format, lf) })
	case format == formatYAML || len(o.in.files) == 0:
		err = printAfter(writeLock, func() error { return lf.Encode(stdout, lockFormat) })
	default:
		var so scan.Options
		if so, err = o.in.scanOptions(cmd); err == nil {
			var rres rewrite.Result
			rres, err = writeRewritten(ctx, o.in.files, rewrite.Options{Map: pinned(lf), Scan: so}, o.outputFile, stdout, writeLock)
			warnLeft(stderr, rres.Left)
		}
	}
	if err == nil {
		o.out.notice(stderr)
	}
	return err
}

// check refuses flag combinations, and output paths that cannot be
// written: found now, not after every registry was asked.
func (o *resolveOptions) check(cmd *cobra.Command) (string, lock.Format, error) {
	if err := o.in.check(cmd); err != nil {
		return "", "", err
	}
	format, err := o.out.parse(cmd, &o.outputFile)
	if err != nil {
		return "", "", err
	}
	lockFormat := lock.Format(o.lockFormat)
	switch {
	case lockFormat != lock.FormatFerry && lockFormat != lock.FormatKbld:
		return "", "", usageErrorf(cmd, "--lock-format %q: want ferry or kbld", o.lockFormat)
	case o.outputFile != "" && len(o.in.files) == 0:
		return "", "", usageErrorf(cmd, "--output-file takes the pinned manifests, and without -f there are none: write the lock with --lock-output")
	case o.outputFile != "" && format != formatText:
		return "", "", usageErrorf(cmd, "--output-file takes the pinned manifests, which -o %s replaces by the lock: give one of them", format)
	}
	if err := checkWritable("--lock-output", o.lockOutput); err != nil {
		return "", "", err
	}
	return format, lockFormat, checkWritable("--output-file", o.outputFile)
}

// printAfter runs print only once commit has succeeded.
func printAfter(commit, print func() error) error {
	if err := commit(); err != nil {
		return err
	}
	return print()
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
