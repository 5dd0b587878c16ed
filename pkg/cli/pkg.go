package cli

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/ferry-dev/ferry/pkg/bundle"
	"github.com/ferry-dev/ferry/pkg/workflow"
	"github.com/spf13/cobra"
)

type pkgOptions struct {
	root                    *rootOptions
	in                      inputFlags
	reg                     registryFlags
	out                     outputFlag
	lock                    string
	bundle                  string
	includeNonDistributable bool
	supply                  supplyFlags
	splitSize               string
	have                    []string
}

func newPkgCmd(root *rootOptions) *cobra.Command {
	o := &pkgOptions{root: root}
	cmd := &cobra.Command{
		Use:   "pkg (-f PATH... | REF... | --images-file FILE | --lock FILE) --bundle BUNDLE.tar [-o text|json|yaml]",
		Short: "Fetch every image into one bundle file to carry across an air gap",
		Long: `pkg fetches every image of the manifests, of the references given as arguments or
with --images-file, or of a lock, every platform of every index, into one plain tar
of an OCI image layout: manifests as the registries served them, each blob once
however many images share it, every byte checked against its digest. The lock goes
in as ferry.lock.yaml. The same images give the same bytes.

The bundle is built in .BUNDLE.tar.partial beside the output and renamed when
complete; .BUNDLE.tar.partial.journal lists the blobs already written. Interrupted?
Run the same command again: only the missing blobs are fetched. Delete both files to
start over. Run again with --lock over a finished bundle of that lock: nothing is
fetched, and no registry is contacted. A second run on the same output while one is
still writing it is refused (the partial file is locked).

--split-size 4GiB (or 700MiB, 4.7GB, plain bytes; at least 1MiB) writes the bundle
as parts that fit the media: BUNDLE.tar.part-0001, BUNDLE.tar.part-0002, ... each at
most that size, and BUNDLE.tar.parts.json listing every part's size and sha256. The
parts are byte ranges of the ordinary bundle (cat BUNDLE.tar.part-* > BUNDLE.tar
gives it back, byte for byte); verify, inspect, unpkg and serve read them in place
from the base name or the first part, and verify names a bad or missing part.
The bundle is built whole in hidden files beside the output (..BUNDLE.tar.whole.partial
while fetching), then cut into parts from the end, so the disk holds at most the bundle
and one part; an interrupted run resumes either step. See docs/bundle.md.

--have FILE (repeatable) makes a delta bundle: FILE is the relocated lock unpkg wrote
inside (carried back out) or an earlier bundle (a split one by its base name or first
part). Every blob the images of FILE use is left out, since the target holds it; the
manifests always travel. The lock's manifests are fetched from the source by digest
(its relocated locations are out of reach); a bundle is read in place. The bundle lists
what it leaves out in ferry.delta.json, and unpkg refuses it, before pushing anything,
at a target that lacks any of those blobs. Without --have the bundle is complete.

A summary goes to stderr; -o json or -o yaml prints the result (bundle, images,
blobs, bytes) on stdout (see docs/output.md). skopeo reads a bundle too:
skopeo inspect --raw oci-archive:BUNDLE.tar:REF, where REF is the reference as
written in the manifests (see docs/bundle.md).`,
		Example: `  # Bundle the images of a release
  ferry pkg -f release.yaml --bundle bundle.tar

  # Bundle images named on the command line, and print what was bundled as JSON
  ferry pkg nginx:1.25 quay.io/org/app:v1 --bundle bundle.tar -o json

  # Bundle from a lock written by 'ferry resolve'
  ferry pkg --lock images.lock.yaml --bundle bundle.tar

  # The monthly update: only what the air gap does not hold yet
  ferry pkg --lock release-v2.lock.yaml --bundle delta.tar --have relocated.lock.yaml

  # Cut the bundle into parts that fit 4 GiB FAT32 sticks
  ferry pkg --lock images.lock.yaml --bundle bundle.tar --split-size 4GiB

  # Also carry non-distributable (foreign) layers, where licences allow
  ferry pkg --lock images.lock.yaml --bundle bundle.tar --include-non-distributable`,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.in.args(args)
			return o.run(cmd.Context(), cmd, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	o.in.fetch = true // every manifest is read next
	o.in.add(cmd.Flags())
	o.in.addImages(cmd.Flags())
	o.reg.add(cmd.Flags())
	cmd.Flags().StringVar(&o.lock, "lock", "", "bundle the images of this lock instead of scanning -f")
	cmd.Flags().StringVar(&o.bundle, "bundle", "", "bundle file to write (required)")
	addOutput(cmd, &o.out, []string{formatText, formatJSON, formatYAML}, "--bundle")
	cmd.Flags().BoolVar(&o.includeNonDistributable, "include-non-distributable", false, "also bundle non-distributable (foreign) layers; left out by default and recorded in the lock")
	o.supply.add(cmd)
	cmd.Flags().StringArrayVar(&o.have, "have", nil, "make a delta bundle: leave out every blob the images of this relocated lock or earlier bundle use (repeatable)")
	cmd.Flags().StringVar(&o.splitSize, "split-size", "", "write the bundle as parts of at most this size (4GiB, 700MiB, 4.7GB, bytes; at least 1MiB) and a parts file")
	return cmd
}

func (o *pkgOptions) run(ctx context.Context, cmd *cobra.Command, stdout, stderr io.Writer) error {
	format, err := o.out.parse(cmd, &o.bundle)
	if err != nil {
		return err
	}
	if o.bundle == "" {
		return usageErrorf(cmd, "no output: pass the bundle file with --bundle BUNDLE.tar")
	}
	var split int64
	if o.splitSize != "" {
		if split, err = bundle.ParseSize(o.splitSize); err != nil {
			return usageErrorf(cmd, "--split-size: %v", err)
		}
		if split < bundle.MinSplitSize {
			return usageErrorf(cmd, "--split-size %s: parts must be at least 1MiB", o.splitSize)
		}
	}
	filter, err := o.supply.filter(cmd)
	if err != nil {
		return err
	}
	// Found now, not after every image has been fetched.
	if err := checkWritable("--bundle", o.bundle); err != nil {
		return err
	}
	for _, h := range o.have {
		if _, err := os.Stat(h); err != nil && !bundle.IsBundle(h) {
			return fmt.Errorf("--have %s: %w: give the relocated lock unpkg wrote, or an earlier bundle", h, err)
		}
	}
	client, err := o.reg.client(cmd)
	if err != nil {
		return err
	}
	lf, err := o.root.lockFor(ctx, cmd, &o.in, o.lock, client)
	if err != nil {
		return err
	}
	res, err := workflow.Pkg(ctx, client, lf, o.bundle, workflow.PkgOptions{
		IncludeNonDistributable: o.includeNonDistributable, Jobs: o.reg.jobs, Progress: o.root.progress(stderr), SupplyChain: o.supply.on, ArtifactTypes: filter, SplitSize: split, Have: o.have})
	if err != nil {
		return err
	}
	o.root.say(stderr, "%s", pkgSentence(res))
	o.out.notice(stderr)
	if format == formatText {
		return nil
	}
	return printResult(stdout, format, res)
}

// pkgSentence is pkg's summary for people.
func pkgSentence(r *workflow.PkgResult) string {
	what := fmt.Sprintf("%s, %s, %s", plural(len(r.Images), "image"), plural(r.Blobs, "blob"), humanBytes(r.Bytes))
	if n := len(r.Parts); n > 0 {
		what += fmt.Sprintf(" in %s (%s to %s, listed in %s)", plural(n, "part"), r.Parts[0], r.Parts[n-1], r.PartsFile)
	}
	if d := r.Delta; d != nil {
		what += fmt.Sprintf(", a delta leaving out %s (%s) the target holds", plural(d.Blobs, "blob"), humanBytes(d.Bytes))
	}
	if r.Unchanged {
		return fmt.Sprintf("%s is already complete: %s (nothing fetched)", r.Bundle, what)
	}
	s := fmt.Sprintf("wrote %s: %s (fetched %s", r.Bundle, what, humanBytes(r.BytesFetched))
	if r.BlobsResumed > 0 {
		s += fmt.Sprintf(", kept %s from the interrupted run", humanBytes(r.BytesResumed))
	}
	return s + ")"
}
