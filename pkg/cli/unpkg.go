package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/ferry-dev/ferry/pkg/bundle"
	"github.com/ferry-dev/ferry/pkg/lock"
	"github.com/ferry-dev/ferry/pkg/transfer"
	"github.com/spf13/cobra"
)

type unpkgOptions struct {
	root   *rootOptions
	reg    registryFlags
	target targetFlags
	input  string
	supply bool
}

func newUnpkgCmd(root *rootOptions) *cobra.Command {
	o := &unpkgOptions{root: root}
	cmd := &cobra.Command{
		Use:   "unpkg -i BUNDLE.tar --repository REG/PATH [--layout path|host|flat] [--lock-output FILE]",
		Short: "Push a bundle into a registry, digests unchanged, and write the relocated lock",
		Long: `unpkg pushes every image of a bundle made by 'ferry pkg' into --repository: blobs
streamed from the bundle and checked against their digests on the way, manifests
byte for byte as the source registry served them, children before the indexes that
list them, then the original tags where the layout keeps them. A blob is uploaded
once and mounted into the other repositories that need it; what the registry
already holds is not sent again, so a rerun finishes an interrupted push.

The lock with each image's new location (by digest) is written with --lock-output,
or printed; 'ferry rewrite --lock' applies it to the manifests. See docs/layouts.md
for where images land.`,
		Example: `  # Inside the air gap
  ferry unpkg -i bundle.tar --repository registry.internal/mirror --lock-output relocated.lock.yaml
  ferry rewrite -f release.yaml --lock relocated.lock.yaml > release.relocated.yaml

  # A registry without TLS, every image in one repository
  ferry unpkg -i bundle.tar --repository 10.0.0.5:5000/all --layout flat --insecure-registry 10.0.0.5:5000 > relocated.lock.yaml`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.Context(), cmd, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVarP(&o.input, "input", "i", "", "bundle file made by 'ferry pkg' (required)")
	o.target.add(cmd.Flags())
	o.reg.add(cmd.Flags())
	addSupplyChainFlag(cmd, &o.supply)
	return cmd
}

func (o *unpkgOptions) run(ctx context.Context, cmd *cobra.Command, stdout, stderr io.Writer) error {
	if o.input == "" {
		return usageErrorf(cmd, "no bundle: pass -i BUNDLE.tar")
	}
	ro, format, err := o.target.options(cmd, o.reg.jobs)
	if err != nil {
		return err
	}
	client, err := o.reg.client(cmd)
	if err != nil {
		return err
	}
	r, err := bundle.Open(o.input)
	if err != nil {
		return err
	}
	defer r.Close()
	entries, err := bundleEntries(ctx, r, o.supply)
	if err != nil {
		return err
	}
	if n := len(r.Artifacts()); n > 0 && !o.supply {
		o.root.log(stderr).Warn("the bundle carries signatures, attestations, SBOMs or referrers that are left out: pass --supply-chain to push them", "artifacts", n)
	}
	ro.Progress = o.root.progress(stderr)
	out, res, err := transfer.Relocate(ctx, client, entries, ro)
	if err != nil {
		return explain(err)
	}
	logResult(o.root.log(stderr), "pushed", ro.Repository, res)
	return writeLock(out, o.target.lockOutput, format, stdout, o.root.log(stderr))
}

// bundleEntries pairs each image of the bundle with its lock entry, which
// says where it came from and so where it lands. A bundle from another
// tool has no lock: its reference names stand in.
func bundleEntries(ctx context.Context, r *bundle.Reader, supply bool) ([]transfer.Entry, error) {
	lf := r.Lock()
	var entries []transfer.Entry
	for _, ref := range r.Entries() {
		if ref.Name == "" {
			return nil, fmt.Errorf("bundle %s: image %s has no reference name (org.opencontainers.image.ref.name), so ferry cannot tell where it belongs", r.Path(), ref.Desc.Digest)
		}
		root, err := r.Walk(ctx, ref)
		if err != nil {
			return nil, fmt.Errorf("bundle %s: reading %q: %w", r.Path(), ref.Name, err)
		}
		im := lock.Image{Image: ref.Name}
		if lf != nil {
			if e, ok := lf.Lookup(ref.Name); ok {
				im = e
			}
		}
		im.Digest = ref.Desc.Digest.String()
		if im.MediaType == "" {
			im.MediaType = string(ref.Desc.MediaType)
		}
		if im.Size == 0 {
			im.Size = ref.Desc.Size
		}
		e := transfer.Entry{Image: im, From: r, Root: root}
		im.Artifacts = nil
		if supply {
			arts, err := r.ArtifactsOf(ctx, root)
			if err != nil {
				return nil, fmt.Errorf("bundle %s: reading the artifacts of %q: %w", r.Path(), ref.Name, err)
			}
			e.Artifacts = toTransfer(arts)
			im.Artifacts = bundle.LockArtifacts(arts)
		}
		e.Image = im
		entries = append(entries, e)
	}
	if len(entries) == 0 {
		return nil, fmt.Errorf("bundle %s holds no images", r.Path())
	}
	return entries, nil
}
