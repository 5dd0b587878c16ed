package cli

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"syscall"

	"github.com/ferry-dev/ferry/pkg/access"
	"github.com/ferry-dev/ferry/pkg/destination"
	"github.com/ferry-dev/ferry/pkg/graph"
	"github.com/ferry-dev/ferry/pkg/imageref"
	"github.com/ferry-dev/ferry/pkg/lock"
	"github.com/ferry-dev/ferry/pkg/rewrite"
	"github.com/ferry-dev/ferry/pkg/source"
	"github.com/ferry-dev/ferry/pkg/transfer"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// targetFlags say where unpkg and relocate put images and the lock.
type targetFlags struct {
	repository string
	layout     string
	lockOutput string
	lockFormat string
}

func (f *targetFlags) add(fs *pflag.FlagSet) {
	fs.StringVar(&f.repository, "repository", "", "REG/PATH to push the images under, e.g. registry.internal/mirror (required)")
	fs.StringVar(&f.layout, "layout", "path", "where images land under --repository: path (keep the source path), host (keep host and path) or flat (all in REG/PATH, tagged by digest)")
	fs.StringVar(&f.lockOutput, "lock-output", "", "write the lock with the new locations to this file (default: stdout, unless manifests are printed)")
	fs.StringVar(&f.lockFormat, "lock-format", "ferry", "lock format: ferry or kbld")
}

// options checks the flags and fills the library's options.
func (f *targetFlags) options(cmd *cobra.Command, jobs int) (transfer.RelocateOptions, lock.Format, error) {
	var o transfer.RelocateOptions
	if f.repository == "" {
		return o, "", usageErrorf(cmd, "no target: pass --repository REG/PATH, e.g. --repository registry.internal/mirror")
	}
	if _, err := destination.ParseRepository(f.repository); err != nil {
		return o, "", usageErrorf(cmd, "--repository: %v", err)
	}
	layout, err := destination.ParseLayout(f.layout)
	if err != nil {
		return o, "", usageErrorf(cmd, "--layout: %v", err)
	}
	format := lock.Format(f.lockFormat)
	if format != lock.FormatFerry && format != lock.FormatKbld {
		return o, "", usageErrorf(cmd, "--lock-format %q: want ferry or kbld", f.lockFormat)
	}
	o.Repository, o.Layout, o.Jobs = f.repository, layout, jobs
	return o, format, nil
}

type relocateOptions struct {
	root   *rootOptions
	in     inputFlags
	reg    registryFlags
	target targetFlags
	lock   string
	supply bool
}

func newRelocateCmd(root *rootOptions) *cobra.Command {
	o := &relocateOptions{root: root}
	cmd := &cobra.Command{
		Use:   "relocate (-f PATH... | --lock FILE) --repository REG/PATH [--layout path|host|flat] [--lock-output FILE]",
		Short: "Copy images registry to registry, digests unchanged, and print the rewritten manifests",
		Long: `relocate copies every image the manifests (or a lock) refer to, every platform of
every index, from its registry into --repository, with manifests byte for byte as
the source serves them, so every digest stays the same. A blob is uploaded once per
registry and mounted into the other repositories that need it; what the target
already holds is not sent again, so a rerun finishes an interrupted copy.

With -f, the manifests are printed with each reference pointing at its new location
by digest. With --lock, nothing but the relocated lock is printed (or written with
--lock-output). See docs/layouts.md for where images land.`,
		Example: `  # Copy a release into the internal registry and deploy the rewritten manifests
  ferry relocate -f release.yaml --repository registry.internal/mirror > release.relocated.yaml

  # Keep the source registry in the path, and keep the lock
  ferry relocate -f release.yaml --repository registry.internal/mirror --layout host --lock-output relocated.lock.yaml > release.relocated.yaml

  # From a lock made by 'ferry resolve'
  ferry relocate --lock images.lock.yaml --repository registry.internal/mirror --lock-output relocated.lock.yaml`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.Context(), cmd, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	o.in.add(cmd.Flags())
	o.reg.add(cmd.Flags())
	o.target.add(cmd.Flags())
	cmd.Flags().StringVar(&o.lock, "lock", "", "lock file of the images to copy (instead of -f)")
	addSupplyChainFlag(cmd, &o.supply)
	return cmd
}

func (o *relocateOptions) run(ctx context.Context, cmd *cobra.Command, stdout, stderr io.Writer) error {
	ro, format, err := o.target.options(cmd, o.reg.jobs)
	if err != nil {
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
	entries, err := registryEntries(client, lf)
	if err != nil {
		return err
	}
	if o.supply {
		if err := withArtifacts(ctx, client, lf, entries); err != nil {
			return err
		}
	} else {
		for i := range entries {
			entries[i].Image.Artifacts = nil
		}
	}
	ro.Progress = o.root.progress(stderr)
	out, res, err := transfer.Relocate(ctx, client, entries, ro)
	if err != nil {
		return explain(err)
	}
	logResult(o.root.log(stderr), "relocated", ro.Repository, res)
	if len(o.in.files) > 0 {
		so, err := o.in.scanOptions(cmd)
		if err != nil {
			return err
		}
		if _, err := writeRewritten(ctx, o.in.files, rewrite.Options{Map: relocated(out), Scan: so}, "", stdout); err != nil {
			return err
		}
		if o.target.lockOutput == "" {
			return nil
		}
	}
	return writeLock(out, o.target.lockOutput, format, stdout, o.root.log(stderr))
}

// registryEntries reads each image of the lock from where it is now: the
// relocated copy after a first hop, else where it was resolved.
func registryEntries(client *access.Client, lf *lock.File) ([]transfer.Entry, error) {
	fetchers := map[string]graph.Fetcher{}
	entries := make([]transfer.Entry, 0, len(lf.Images))
	for _, im := range lf.Images {
		src := im.Location()
		if src == "" {
			src = im.Image
		}
		r, err := imageref.Parse(src)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", im.Image, err)
		}
		f, ok := fetchers[r.Repo.Name()]
		if !ok {
			f = source.New(client, r.Repo)
			fetchers[r.Repo.Name()] = f
		}
		entries = append(entries, transfer.Entry{Image: im, From: f})
	}
	return entries, nil
}

// relocated maps each reference as written to its new location.
func relocated(f *lock.File) func(string) (string, bool) {
	m := make(map[string]string, len(f.Images))
	for _, im := range f.Images {
		m[im.Image] = im.Relocated
	}
	return func(s string) (string, bool) {
		v, ok := m[s]
		return v, ok && v != ""
	}
}

// writeLock writes the relocated lock to path, or to stdout without one.
func writeLock(f *lock.File, path string, format lock.Format, stdout io.Writer, log *slog.Logger) error {
	if path == "" {
		return f.Encode(stdout, format)
	}
	if err := f.Write(path, format); err != nil {
		return err
	}
	log.Info("wrote lock", "file", path, "images", len(f.Images))
	return nil
}

// logResult is the closing note: what was sent, linked and found.
func logResult(log *slog.Logger, verb, repository string, r transfer.Result) {
	log.Info(fmt.Sprintf("%s %d images into %s", verb, r.Images, repository),
		"blobs_uploaded", r.BlobsUploaded, "bytes_uploaded", r.BytesUploaded,
		"blobs_mounted", r.BlobsMounted, "bytes_mounted", r.BytesMounted,
		"blobs_present", r.BlobsSkipped, "bytes_present", r.BytesSkipped,
		"manifests_pushed", r.ManifestsPushed, "manifests_present", r.ManifestsSkipped,
		"tags_pushed", r.TagsPushed, "tags_present", r.TagsSkipped)
}

// explain adds what to do to a push or pull error the user can act on.
func explain(err error) error {
	var te *transport.Error
	var re *access.RetryError
	var unknownCA x509.UnknownAuthorityError
	var certErr *x509.CertificateInvalidError
	switch {
	case errors.As(err, &te) && (te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden):
		host := ""
		if te.Request != nil {
			host = te.Request.URL.Host
		}
		return fmt.Errorf("%w: log in with '%s' (or check that this account may pull from, or push to, that repository)", err, access.LoginCommand(host))
	case errors.As(err, &re):
		return err // says what to do already
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("%w: is the registry running? check --repository", err)
	case strings.Contains(err.Error(), "--registry-ca-cert"):
		return err
	case errors.As(err, &unknownCA) || errors.As(err, &certErr) || strings.Contains(err.Error(), "x509: certificate"):
		return fmt.Errorf("%w: trust the registry's CA with --registry-ca-cert FILE", err)
	}
	return err
}
