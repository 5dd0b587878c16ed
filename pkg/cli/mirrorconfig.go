package cli

import (
	"fmt"
	"io"

	"github.com/ferry-dev/ferry/pkg/atomicfile"
	"github.com/ferry-dev/ferry/pkg/lock"
	"github.com/ferry-dev/ferry/pkg/mirrorconfig"
	"github.com/spf13/cobra"
)

type mirrorConfigOptions struct {
	root       *rootOptions
	out        outputFlag
	lockFile   string
	format     string
	outputDir  string
	outputFile string
	insecure   []string
	caCerts    []string
	neverSrc   bool
}

func newMirrorConfigCmd(root *rootOptions) *cobra.Command {
	o := &mirrorConfigOptions{root: root}
	cmd := &cobra.Command{
		Use:   "mirror-config --lock FILE (--format containerd --output-dir DIR | --format crio|idms [--output-file FILE])",
		Short: "Write registry mirror settings that send nodes' pulls to the relocated registry",
		Long: `mirror-config reads a relocated lock (from unpkg or relocate) and tells container
runtimes to pull every source registry's images from where ferry put them, falling
back to the source registry. Manifests stay untouched.

--format containerd writes DIR/<source registry>/hosts.toml (containerd's certs.d
layout; containerd needs config_path set to DIR) into --output-dir DIR.
--format crio prints containers-registries.conf v2 entries, or writes them to
--output-file FILE. --format idms prints OpenShift's ImageDigestMirrorSet, and an
ImageTagMirrorSet for the mirrors that received tags, as one YAML stream for
oc apply -f (or to --output-file FILE); --never-contact-source makes a pull the
mirrors cannot serve fail instead of trying the source registry. (-o PATH still
names the directory or file, with a notice.)

A mirror that serves plain HTTP: --insecure-registry HOST[:PORT] (containerd gets an
http:// host, CRI-O insecure = true). A mirror whose certificate a private CA signed:
--registry-ca-cert FILE (containerd's hosts.toml names FILE by its absolute path, where
every node must have it; for CRI-O and OpenShift the output says, in comments, where it goes).

A mirror keeps the repository path, so images relocated with --layout flat cannot
be expressed: that is an error. See docs/mirror-config.md for the caveats.`,
		Example: `  # containerd: one hosts.toml per source registry
  ferry mirror-config --lock relocated.lock.yaml --format containerd --output-dir /etc/containerd/certs.d

  # CRI-O: a drop-in registries.conf
  ferry mirror-config --lock relocated.lock.yaml --format crio --output-file /etc/containers/registries.conf.d/50-ferry.conf

  # OpenShift: mirror sets for the cluster
  ferry mirror-config --lock relocated.lock.yaml --format idms | oc apply -f -

  # a mirror with a certificate from the company CA, another over plain HTTP
  ferry mirror-config --lock relocated.lock.yaml --format containerd --output-dir certs.d \
    --registry-ca-cert /etc/pki/company-ca.pem --insecure-registry lab.internal:5000`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.lockFile, "lock", "", "relocated lock to read (required)")
	f.StringVar(&o.format, "format", "containerd", "containerd (hosts.toml files), crio (registries.conf) or idms (OpenShift ImageDigestMirrorSet and ImageTagMirrorSet)")
	f.StringVar(&o.outputDir, "output-dir", "", "containerd: directory to write the hosts.toml files into (required)")
	f.StringVar(&o.outputFile, "output-file", "", "crio, idms: file to write instead of stdout")
	addOutput(cmd, &o.out, nil, "--output-dir or --output-file")
	completeWords(cmd, "format", "containerd", "crio", "idms")
	f.StringArrayVar(&o.insecure, "insecure-registry", nil, "HOST[:PORT] of a mirror that serves plain HTTP (repeatable)")
	f.StringArrayVar(&o.caCerts, "registry-ca-cert", nil, "PEM file of a CA that signed a mirror's certificate, at the same path on the nodes (repeatable)")
	f.BoolVar(&o.neverSrc, "never-contact-source", false, "idms: a pull the mirrors cannot serve fails instead of going to the source registry (mirrorSourcePolicy: NeverContactSource)")
	return cmd
}

func (o *mirrorConfigOptions) run(cmd *cobra.Command, stdout, stderr io.Writer) error {
	if err := o.check(cmd); err != nil {
		return err
	}
	l, err := lock.Read(o.lockFile)
	if err != nil {
		return err
	}
	regs, err := mirrorconfig.FromLock(l)
	if err != nil {
		return fmt.Errorf("%s: %w", o.lockFile, err)
	}
	mo := mirrorconfig.Options{InsecureHosts: o.insecure, CACertFiles: o.caCerts, NeverContactSource: o.neverSrc}
	if o.format == "containerd" {
		written, err := mirrorconfig.WriteContainerd(o.outputDir, regs, mo)
		for _, p := range written {
			o.root.say(stderr, "wrote %s", p)
		}
		if err == nil {
			o.out.notice(stderr)
		}
		return err
	}
	write := mirrorconfig.RegistriesConf
	if o.format == "idms" {
		write = mirrorconfig.WriteMirrorSets
	}
	if o.outputFile == "" || o.outputFile == "-" {
		return write(stdout, regs, mo)
	}
	if err := atomicfile.Write(o.outputFile, 0o644, func(w io.Writer) error { return write(w, regs, mo) }); err != nil {
		return err
	}
	o.root.say(stderr, "wrote %s", o.outputFile)
	o.out.notice(stderr)
	return nil
}

// check refuses flag combinations, and takes a legacy -o PATH as the
// directory (containerd) or file (crio) it named.
func (o *mirrorConfigOptions) check(cmd *cobra.Command) error {
	if o.lockFile == "" {
		return usageErrorf(cmd, "--lock is required: the lock written by ferry unpkg or ferry relocate")
	}
	if o.neverSrc && o.format != "idms" {
		return usageErrorf(cmd, "--never-contact-source is for --format idms: hosts.toml and registries.conf always fall back to the source registry")
	}
	switch o.format {
	case "containerd":
		if o.outputFile != "" {
			return usageErrorf(cmd, "--format containerd writes a directory of hosts.toml files: pass --output-dir DIR, not --output-file")
		}
		o.out.file = "--output-dir"
		if _, err := o.out.parse(cmd, &o.outputDir); err != nil {
			return err
		}
		if o.outputDir == "" {
			return usageErrorf(cmd, "--format containerd writes a directory of hosts.toml files: pass --output-dir DIR, e.g. --output-dir /etc/containerd/certs.d")
		}
		return nil
	case "crio", "idms":
		if o.outputDir != "" {
			return usageErrorf(cmd, "--format %s writes one file: pass --output-file FILE, not --output-dir", o.format)
		}
		o.out.file = "--output-file"
		if _, err := o.out.parse(cmd, &o.outputFile); err != nil {
			return err
		}
		return checkWritable("--output-file", o.outputFile)
	}
	return usageErrorf(cmd, "--format %q: want containerd, crio or idms", o.format)
}
