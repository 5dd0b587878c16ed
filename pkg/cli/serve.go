package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/ferry-dev/ferry/pkg/bundle"
	"github.com/ferry-dev/ferry/pkg/destination"
	"github.com/ferry-dev/ferry/pkg/lock"
	"github.com/ferry-dev/ferry/pkg/serve"
	"github.com/spf13/cobra"
)

type serveOptions struct {
	root       *rootOptions
	input      string
	addr       string
	tlsCert    string
	tlsKey     string
	layout     string
	repository string
	lockOutput string
	lockFormat string
	maxConns   int
}

func newServeCmd(root *rootOptions) *cobra.Command {
	o := &serveOptions{root: root}
	cmd := &cobra.Command{
		Use:   "serve -i BUNDLE.tar [--addr 127.0.0.1:5000] [--layout path|host|flat] [--lock-output FILE]",
		Short: "Serve a bundle as a read-only registry, straight from the tar",
		Long: `serve answers the pull side of the OCI distribution API from a bundle, without
extracting it: manifests (by tag and digest, the exact bytes stored), blobs (with
Range), tag lists, the catalog and referrers. Everything that writes gets 405.
Images are named as unpkg would have pushed them under --layout, so the lock
written with --lock-output, 'ferry rewrite' and 'ferry mirror-config' work against
it as against a registry: nodes can pull before any registry exists.

The bundle is verified first (every blob hashed once, as 'ferry verify -i' does);
a damaged bundle is refused. It listens on loopback unless --addr says otherwise,
and stops on SIGTERM or Ctrl-C once requests in flight finish. See docs/serve.md.`,
		Example: `  # Pull straight from the bundle on this machine
  ferry serve -i bundle.tar --lock-output served.lock.yaml
  skopeo inspect --tls-verify=false docker://127.0.0.1:5000/library/nginx:1.25

  # For the nodes of a cluster with no registry yet: listen on every address
  # (the user's explicit choice), over TLS, and name the address nodes use
  ferry serve -i bundle.tar --addr 0.0.0.0:5000 --repository 10.0.0.5:5000 \
    --tls-cert serve.pem --tls-key serve-key.pem --lock-output served.lock.yaml
  ferry mirror-config --lock served.lock.yaml --format containerd -o /etc/containerd/certs.d`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.Context(), cmd, cmd.ErrOrStderr())
		},
	}
	fs := cmd.Flags()
	fs.StringVarP(&o.input, "input", "i", "", "bundle file made by 'ferry pkg', or a split bundle's base name or first part (required)")
	fs.StringVar(&o.addr, "addr", "127.0.0.1:5000", "HOST:PORT to listen on; anything but loopback exposes the bundle to the network")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "PEM certificate to serve HTTPS with (with --tls-key)")
	fs.StringVar(&o.tlsKey, "tls-key", "", "PEM private key of --tls-cert")
	fs.StringVar(&o.layout, "layout", "path", "how images are named, as for unpkg: path (keep the source path), host (keep host and path) or flat (all in one repository, tagged by digest)")
	fs.StringVar(&o.repository, "repository", "", "REG[/PATH] clients reach the server at: REG goes into the lock, PATH before every repository name (default: the --addr, no path)")
	fs.StringVar(&o.lockOutput, "lock-output", "", "write the lock with each image's served location to this file")
	fs.StringVar(&o.lockFormat, "lock-format", "ferry", "lock format: ferry or kbld")
	fs.IntVar(&o.maxConns, "max-connections", serve.DefaultMaxConns, "connections served at once; more wait")
	return cmd
}

func (o *serveOptions) run(ctx context.Context, cmd *cobra.Command, stderr io.Writer) error {
	if o.input == "" {
		return usageErrorf(cmd, "no bundle: pass -i BUNDLE.tar")
	}
	if (o.tlsCert == "") != (o.tlsKey == "") {
		return usageErrorf(cmd, "give --tls-cert and --tls-key together")
	}
	if o.maxConns < 1 {
		return usageErrorf(cmd, "--max-connections must be at least 1, got %d", o.maxConns)
	}
	layout, err := destination.ParseLayout(o.layout)
	if err != nil {
		return usageErrorf(cmd, "--layout: %v", err)
	}
	format := lock.Format(o.lockFormat)
	if format != lock.FormatFerry && format != lock.FormatKbld {
		return usageErrorf(cmd, "--lock-format %q: want ferry or kbld", o.lockFormat)
	}
	var base destination.Base
	if o.repository != "" {
		if base, err = destination.ParseRepository(o.repository); err != nil {
			return usageErrorf(cmd, "--repository: %v", err)
		}
	}
	host, _, err := net.SplitHostPort(o.addr)
	if err != nil {
		return usageErrorf(cmd, "--addr %q: want HOST:PORT, e.g. 127.0.0.1:5000", o.addr)
	}
	if ip := net.ParseIP(host); (host == "" || ip != nil && ip.IsUnspecified()) && o.lockOutput != "" && o.repository == "" {
		return usageErrorf(cmd, "--addr %s listens on every address, so the lock cannot say which one nodes use: pass --repository HOST:PORT", o.addr)
	}
	log := o.root.log(stderr)
	rep, err := checkBundle(ctx, o.input, 4, o.root.progress(stderr), stderr)
	if err != nil {
		return err
	}
	if d := rep.Delta; d != nil {
		log.Warn(fmt.Sprintf("%s is a delta bundle: %s (%s) it relies on are not in it, and pulls of them get 404; pull those images from the registry that holds %s", o.input, plural(d.Blobs, "blob"), humanBytes(d.Bytes), deltaBases(d.Bases)))
	}
	r, err := bundle.Open(o.input)
	if err != nil {
		return err
	}
	defer r.Close()
	x, err := serve.New(ctx, r, serve.Options{Path: base.Path, Layout: layout})
	if errors.Is(err, serve.ErrFlatNeedsPath) {
		return usageErrorf(cmd, "--layout flat: %v: pass --repository HOST:PORT/NAME", err)
	}
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w: choose another --addr", o.addr, err)
	}
	registry := ln.Addr().String()
	if o.repository != "" {
		registry = base.Registry.Name()
	}
	if o.lockOutput != "" {
		if err := x.Lock(registry).Write(o.lockOutput, format); err != nil {
			ln.Close()
			return err
		}
		o.root.say(stderr, "wrote %s: the served location of every image", o.lockOutput)
	}
	scheme := "http"
	if o.tlsCert != "" {
		scheme = "https"
	}
	if ip, ok := ln.Addr().(*net.TCPAddr); ok && !ip.IP.IsLoopback() {
		log.Warn("listening beyond loopback: the bundle's images can be pulled from the network", "addr", ln.Addr().String())
	}
	o.root.say(stderr, "serving %s on %s://%s (%s, read-only); Ctrl-C stops", o.input, scheme, ln.Addr(), plural(len(x.Repositories()), "repository"))
	return serve.Serve(ctx, ln, x.Handler(log), serve.ServerOptions{
		MaxConns: o.maxConns, TLSCertFile: o.tlsCert, TLSKeyFile: o.tlsKey, Log: log,
	})
}
