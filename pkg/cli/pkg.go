package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/ferry-dev/ferry/pkg/access"
	"github.com/ferry-dev/ferry/pkg/bundle"
	"github.com/ferry-dev/ferry/pkg/graph"
	"github.com/ferry-dev/ferry/pkg/imageref"
	"github.com/ferry-dev/ferry/pkg/lock"
	"github.com/ferry-dev/ferry/pkg/referrer"
	"github.com/ferry-dev/ferry/pkg/source"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"
)

type pkgOptions struct {
	root                    *rootOptions
	in                      inputFlags
	reg                     registryFlags
	lock                    string
	output                  string
	includeNonDistributable bool
	supplyChain             bool
}

func newPkgCmd(root *rootOptions) *cobra.Command {
	o := &pkgOptions{root: root}
	cmd := &cobra.Command{
		Use:   "pkg (-f PATH... | --lock FILE) -o BUNDLE.tar",
		Short: "Fetch every image into one bundle file to carry across an air gap",
		Long: `pkg fetches every image of the manifests (or of a lock), every platform of every
index, into one plain tar of an OCI image layout: manifests as the registries served
them, each blob once however many images share it, every byte checked against its
digest. The lock goes in as ferry.lock.yaml. The same images give the same bytes.

The bundle is built in .BUNDLE.tar.partial beside the output and renamed when
complete; .BUNDLE.tar.partial.journal lists the blobs already written. Interrupted?
Run the same command again: only the missing blobs are fetched. Delete both files to
start over. Run again with --lock over a finished bundle of that lock: nothing is
fetched, and no registry is contacted. A second run on the same output while one is
still writing it is refused (the partial file is locked).

skopeo reads a bundle too: skopeo inspect --raw oci-archive:BUNDLE.tar:REF, where
REF is the reference as written in the manifests (see docs/bundle.md).`,
		Example: `  # Bundle the images of a release
  ferry pkg -f release.yaml -o bundle.tar

  # Bundle from a lock written by 'ferry resolve'
  ferry pkg --lock images.lock.yaml -o bundle.tar

  # Also carry non-distributable (foreign) layers, where licences allow
  ferry pkg --lock images.lock.yaml -o bundle.tar --include-non-distributable`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.Context(), cmd)
		},
	}
	o.in.add(cmd.Flags())
	o.reg.add(cmd.Flags())
	cmd.Flags().StringVar(&o.lock, "lock", "", "bundle the images of this lock instead of scanning -f")
	cmd.Flags().StringVarP(&o.output, "output", "o", "", "bundle file to write (required)")
	cmd.Flags().BoolVar(&o.includeNonDistributable, "include-non-distributable", false, "also bundle non-distributable (foreign) layers; left out by default and recorded in the lock")
	addSupplyChainFlag(cmd, &o.supplyChain)
	return cmd
}

func (o *pkgOptions) run(ctx context.Context, cmd *cobra.Command) error {
	if o.output == "" {
		return usageErrorf(cmd, "no output: pass the bundle file with -o BUNDLE.tar")
	}
	// Found now, not after every image has been fetched.
	if err := checkOutputPath(o.output); err != nil {
		return err
	}
	client, err := o.reg.client(cmd)
	if err != nil {
		return err
	}
	lf, err := o.root.lockFor(ctx, cmd, &o.in, o.lock, client)
	if err != nil {
		return err
	}
	// A finished bundle of this very lock is recognised without a registry.
	if !o.supplyChain {
		for i := range lf.Images {
			lf.Images[i].Artifacts = nil
		}
	}
	if bundle.CurrentWith(ctx, o.output, lf, bundle.CurrentOptions{IncludeNonDistributable: o.includeNonDistributable, Artifacts: o.supplyChain}) {
		o.root.log(cmd.ErrOrStderr()).Info("bundle already complete: nothing fetched", "file", o.output, "images", len(lf.Images))
		return nil
	}
	entries, err := walkLock(ctx, client, lf, graph.Options{IncludeNonDistributable: o.includeNonDistributable}, o.supplyChain)
	if err != nil {
		return err
	}
	st, err := bundle.Write(ctx, o.output, entries, bundle.Options{Lock: lf, Jobs: o.reg.jobs, Progress: o.root.progress(cmd.ErrOrStderr())})
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("writing bundle %s: interrupted; what was fetched is kept in %s: run the same command again to resume", o.output, bundle.PartialPath(o.output))
	}
	if err != nil {
		return fmt.Errorf("writing bundle %s: %w", o.output, err)
	}
	if st.Unchanged {
		o.root.log(cmd.ErrOrStderr()).Info("bundle already complete: nothing fetched", "file", o.output, "images", st.Images)
		return nil
	}
	o.root.log(cmd.ErrOrStderr()).Info("wrote bundle", "file", o.output, "images", st.Images, "blobs", st.Files,
		"size", humanBytes(st.Size), "fetched", humanBytes(st.FetchedBytes), "resumed", humanBytes(st.ResumedBytes))
	return nil
}

// walkLock fetches every manifest of every lock image, concurrently, and
// records the non-distributable layers left out in lf. With supply, it
// also finds and records the artifacts attached to each image.
func walkLock(ctx context.Context, client *access.Client, lf *lock.File, wo graph.Options, supply bool) ([]bundle.Entry, error) {
	entries := make([]bundle.Entry, len(lf.Images))
	repos := map[string]*source.Repo{}
	finders := map[*source.Repo]*referrer.Finder{}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(client.Jobs())
	for i, im := range lf.Images {
		// Read from where the image is now: after a first hop that is the
		// relocated copy, not the source beyond the firewall.
		ref, err := imageref.Parse(im.Location())
		if err != nil {
			if ref, err = imageref.Parse(im.Image); err != nil {
				return nil, fmt.Errorf("lock entry %q: %w", im.Image, err)
			}
		}
		h, err := v1.NewHash(im.Digest)
		if err != nil {
			return nil, fmt.Errorf("lock entry %q has no valid digest (%q): run 'ferry resolve --lock-output' first", im.Image, im.Digest)
		}
		repo := repos[ref.Repo.Name()]
		if repo == nil {
			repo = source.New(client, ref.Repo)
			repos[ref.Repo.Name()] = repo
			finders[repo] = referrer.New(repo, referrer.Options{NoAPI: source.ErrNoReferrersAPI, NoList: source.ErrTagsDenied, NoTag: source.ErrNoTag, Jobs: client.Jobs()})
		}
		finder := finders[repo]
		desc := v1.Descriptor{Digest: h, Size: im.Size, MediaType: types.MediaType(im.MediaType)}
		g.Go(func() error {
			var arts *artifactsOf
			if supply {
				arts = findArtifacts(gctx, finder, h)
			}
			root, err := graph.Walk(gctx, repo, desc, wo)
			if err != nil {
				return fmt.Errorf("fetching manifests of %q (%s@%s): %w", im.Image, ref.Repo, im.Digest, err)
			}
			entries[i] = bundle.Entry{Name: im.Image, Root: root, Fetcher: repo}
			if supply {
				found, err := arts.and(gctx, root)
				if err != nil {
					return fmt.Errorf("finding signatures, attestations and referrers of %q (%s@%s): %w (--supply-chain=false leaves them out)", im.Image, ref.Repo, im.Digest, err)
				}
				entries[i].Artifacts = found
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	for i, e := range entries {
		var left []string
		for _, d := range e.Root.AllSkipped() {
			left = append(left, d.Digest.String())
		}
		slices.Sort(left)
		lf.Images[i].NonDistributable = left
		lf.Images[i].Artifacts = bundle.LockArtifacts(e.Artifacts)
	}
	return entries, nil
}

// humanBytes renders n in binary units.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// checkOutputPath refuses an output that is a directory or whose directory
// does not exist.
func checkOutputPath(path string) error {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return fmt.Errorf("-o %s is a directory: give a file name such as %s", path, filepath.Join(path, "bundle.tar"))
	}
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("-o %s: directory %s does not exist: create it first", path, dir)
	}
	if !fi.IsDir() {
		return fmt.Errorf("-o %s: %s is not a directory", path, dir)
	}
	return nil
}
