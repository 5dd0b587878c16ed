package cli

import (
	"github.com/ferry-dev/ferry/pkg/access"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// registryFlags are the flags of every command that talks to a registry.
type registryFlags struct {
	caCerts  []string
	insecure []string
	jobs     int
}

func (f *registryFlags) add(fs *pflag.FlagSet) {
	fs.StringArrayVar(&f.caCerts, "registry-ca-cert", nil, "PEM file of a CA to trust for registries, in addition to the system's (repeatable)")
	fs.StringArrayVar(&f.insecure, "insecure-registry", nil, "HOST[:PORT] that may be reached over plain HTTP (repeatable); every other registry must have verified TLS")
	fs.IntVar(&f.jobs, "concurrency", 8, "how many requests run at once")
}

// client builds the registry client the library calls take.
func (f *registryFlags) client(cmd *cobra.Command) (*access.Client, error) {
	if f.jobs < 1 {
		return nil, usageErrorf(cmd, "--concurrency must be at least 1, got %d", f.jobs)
	}
	return access.New(access.Options{CACertFiles: f.caCerts, InsecureHosts: f.insecure, Jobs: f.jobs, UserAgent: "ferry/" + Version})
}

// inputFlags are the -f flags of commands that read manifests.
type inputFlags struct {
	files  []string
	config string
	// stdin holds "-f -" once read: commands that resolve and then rewrite
	// read it twice.
	stdin []byte
	read  bool
	// maxDocSize is --max-document-size as given.
	maxDocSize string
}

func (f *inputFlags) add(fs *pflag.FlagSet) {
	fs.StringArrayVarP(&f.files, "filename", "f", nil, "manifest file, directory (recursive: .yaml, .yml, .json) or - for stdin (repeatable)")
	fs.StringVar(&f.config, "config", "", "ferry config file with extra search rules (see docs/config.md)")
	fs.StringVar(&f.maxDocSize, "max-document-size", "64MiB", "largest single YAML document to read, e.g. 64MiB or 1GiB; 0 for no limit (see docs/scan.md)")
}

// check requires at least one -f.
func (f *inputFlags) check(cmd *cobra.Command) error {
	if len(f.files) == 0 {
		return usageErrorf(cmd, "no input: pass manifests with -f FILE, -f DIR or -f -")
	}
	return nil
}
