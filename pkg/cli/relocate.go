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
	"github.com/ferry-dev/ferry/pkg/lock"
	"github.com/ferry-dev/ferry/pkg/rewrite"
	"github.com/ferry-dev/ferry/pkg/workflow"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/spf13/cobra"
)

type relocateOptions struct {
	root   *rootOptions
	in     inputFlags
	reg    registryFlags
	target targetFlags
	out    outputFlag
	lock   string
	supply supplyFlags
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
	o.in.fetch = true // every manifest is read next
	o.in.add(cmd.Flags())
	o.in.addImages(cmd.Flags())
	o.reg.add(cmd.Flags())
	o.target.add(cmd.Flags())
	o.target.complete(cmd)
	cmd.Flags().StringVar(&o.lock, "lock", "", "lock file of the images to copy (instead of -f)")
	addOutput(cmd, &o.out, []string{formatText, formatJSON, formatYAML}, "")
	o.supply.add(cmd)
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
	filter, err := o.supply.filter(cmd)
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
	out, res, err := workflow.Relocate(ctx, client, lf, workflow.RelocateOptions{RelocateOptions: ro, SupplyChain: o.supply.on, ArtifactTypes: filter})
	if err != nil {
		return explain(err)
	}
	var manifests []byte
	if len(o.in.files) > 0 && format == formatText {
		so, err := o.in.scanOptions(cmd)
		if err != nil {
			return err
		}
		var rres rewrite.Result
		if manifests, rres, err = rewritten(ctx, o.in.files, rewrite.Options{Map: relocated(out), Scan: so}); err != nil {
			return err
		}
		warnLeft(stderr, rres.Left)
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
	var ae *access.AuthError
	switch {
	case errors.As(err, &ae):
		return err // says what to do already
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
