package cli

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"

	"github.com/ferry-dev/ferry/pkg/access"
	"github.com/ferry-dev/ferry/pkg/destination"
	"github.com/ferry-dev/ferry/pkg/lock"
	"github.com/ferry-dev/ferry/pkg/rewrite"
	"github.com/ferry-dev/ferry/pkg/transfer"
	"github.com/ferry-dev/ferry/pkg/workflow"
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

// complete registers the completions of the flags add added.
func (f *targetFlags) complete(cmd *cobra.Command) {
	completeWords(cmd, "layout", "path", "host", "flat")
	completeWords(cmd, "lock-format", string(lock.FormatFerry), string(lock.FormatKbld))
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
	// Found now, not after everything was pushed.
	if err := checkWritable("--lock-output", f.lockOutput); err != nil {
		return o, "", err
	}
	o.Repository, o.Layout, o.Jobs = f.repository, layout, jobs
	return o, format, nil
}

// finish writes the relocated lock to --lock-output and says what was
// pushed on stderr. On stdout, text prints the lock when --lock-output
// does not take it and no manifests are printed; json and yaml print the
// result instead.
func (f *targetFlags) finish(root *rootOptions, lf *lock.File, res *workflow.RelocateResult, lockFormat lock.Format, outFormat string, manifests []byte, stdout, stderr io.Writer) error {
	if f.lockOutput != "" {
		if err := lf.Write(f.lockOutput, lockFormat); err != nil {
			return err
		}
		res.Lock = f.lockOutput
	}
	log := root.log(stderr)
	log.Debug("relocated", "repository", res.Repository, "images", len(res.Images),
		"blobs_uploaded", res.BlobsUploaded, "bytes_uploaded", res.BytesUploaded,
		"blobs_mounted", res.BlobsMounted, "bytes_mounted", res.BytesMounted,
		"blobs_present", res.BlobsPresent, "bytes_present", res.BytesPresent,
		"manifests_pushed", res.ManifestsPushed, "manifests_present", res.ManifestsPresent,
		"tags_pushed", res.TagsPushed, "tags_present", res.TagsPresent)
	root.say(stderr, "%s", relocateSentence(res))
	switch {
	case outFormat != formatText:
		return printResult(stdout, outFormat, res)
	case manifests != nil:
		_, err := stdout.Write(manifests)
		return err
	case f.lockOutput == "":
		return lf.Encode(stdout, lockFormat)
	}
	return nil
}

// relocateSentence is unpkg's and relocate's summary for people.
func relocateSentence(r *workflow.RelocateResult) string {
	s := fmt.Sprintf("pushed %s into %s: %s uploaded (%s), %d mounted (%s), %d already there; %s and %s pushed, %d already there",
		plural(len(r.Images), "image"), r.Repository,
		plural(r.BlobsUploaded, "blob"), humanBytes(r.BytesUploaded), r.BlobsMounted, humanBytes(r.BytesMounted), r.BlobsPresent,
		plural(r.ManifestsPushed, "manifest"), plural(r.TagsPushed, "tag"), r.ManifestsPresent+r.TagsPresent)
	if r.Lock != "" {
		s += "; wrote " + r.Lock
	}
	return s
}

type relocateOptions struct {
	root   *rootOptions
	in     inputFlags
	reg    registryFlags
	target targetFlags
	out    outputFlag
	lock   string
}

func newRelocateCmd(root *rootOptions) *cobra.Command {
	o := &relocateOptions{root: root}
	cmd := &cobra.Command{
		Use:   "relocate (-f PATH... | REF... | --images-file FILE | --lock FILE) --repository REG/PATH [--layout path|host|flat] [--lock-output FILE] [-o text|json|yaml]",
		Short: "Copy images registry to registry, digests unchanged, and print the rewritten manifests",
		Long: `relocate copies every image the manifests, the references given as arguments or
with --images-file, or a lock refer to, every platform of every index, from its
registry into --repository, with manifests byte for byte as the source serves them,
so every digest stays the same. A blob is uploaded once per registry and mounted
into the other repositories that need it; what the target already holds is not sent
again, so a rerun finishes an interrupted copy.

With -f, the manifests are printed with each reference pointing at its new location
by digest. Without -f, the relocated lock is printed (or written with
--lock-output). -o json or -o yaml prints the result instead (images and their new
locations, blobs uploaded, mounted and already there: see docs/output.md). A summary
goes to stderr. See docs/layouts.md for where images land.`,
		Example: `  # Copy a release into the internal registry and deploy the rewritten manifests
  ferry relocate -f release.yaml --repository registry.internal/mirror > release.relocated.yaml

  # Keep the source registry in the path, and keep the lock
  ferry relocate -f release.yaml --repository registry.internal/mirror --layout host --lock-output relocated.lock.yaml > release.relocated.yaml

  # Copy two images named on the command line; print where they went as JSON
  ferry relocate nginx:1.25 quay.io/org/app:v1 --repository registry.internal/mirror -o json

  # From a lock made by 'ferry resolve'
  ferry relocate --lock images.lock.yaml --repository registry.internal/mirror --lock-output relocated.lock.yaml`,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.in.args(args)
			return o.run(cmd.Context(), cmd, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	o.in.add(cmd.Flags())
	o.in.addImages(cmd.Flags())
	o.reg.add(cmd.Flags())
	o.target.add(cmd.Flags())
	o.target.complete(cmd)
	cmd.Flags().StringVar(&o.lock, "lock", "", "lock file of the images to copy (instead of -f)")
	addOutput(cmd, &o.out, []string{formatText, formatJSON, formatYAML}, "")
	return cmd
}

func (o *relocateOptions) run(ctx context.Context, cmd *cobra.Command, stdout, stderr io.Writer) error {
	format, err := o.out.parse(cmd, nil)
	if err != nil {
		return err
	}
	ro, lockFormat, err := o.target.options(cmd, o.reg.jobs)
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
	ro.Progress = o.root.progress(stderr)
	out, res, err := workflow.Relocate(ctx, client, lf, ro)
	if err != nil {
		return explain(err)
	}
	var manifests []byte
	if len(o.in.files) > 0 && format == formatText {
		so, err := o.in.scanOptions(cmd)
		if err != nil {
			return err
		}
		if manifests, _, err = rewritten(ctx, o.in.files, rewrite.Options{Map: relocated(out), Scan: so}); err != nil {
			return err
		}
	}
	return o.target.finish(o.root, out, res, lockFormat, format, manifests, stdout, stderr)
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
