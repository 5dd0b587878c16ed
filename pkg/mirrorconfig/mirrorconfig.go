// Package mirrorconfig turns a relocated lock into registry mirror settings
// for container runtimes: containerd's hosts.toml files, CRI-O's
// registries.conf and OpenShift's ImageDigestMirrorSet and
// ImageTagMirrorSet, so that nodes pull source references from the new
// home without any manifest being rewritten.
package mirrorconfig

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/ferry-dev/ferry/pkg/atomicfile"
	"github.com/ferry-dev/ferry/pkg/imageref"
	"github.com/ferry-dev/ferry/pkg/lock"
)

// Registry is one source registry and the places its repositories were
// relocated to.
type Registry struct {
	// Host is the registry as runtimes name it: "docker.io", "gcr.io".
	Host string
	// Server is the registry's own endpoint, the fallback.
	Server string
	// Mirrors are tried in order: the one holding most images first.
	Mirrors []Mirror
}

// Mirror is a relocated registry and the path prefix every source
// repository was placed under.
type Mirror struct {
	// Host is the relocated registry, e.g. "registry.internal".
	Host string
	// Prefix is the path before the source repository path, e.g. "mirror";
	// "" when repositories keep their path at the root.
	Prefix string
	// Images lists the lock entries relocated this way.
	Images []string
}

// Location is where the mirror keeps the source paths: "registry.internal/mirror".
func (m Mirror) Location() string {
	if m.Prefix == "" {
		return m.Host
	}
	return m.Host + "/" + m.Prefix
}

// LayoutError lists lock entries whose relocated repository does not end
// with the source repository's path (the flat layout): a mirror keeps the
// path, so they cannot be expressed.
type LayoutError struct {
	// Images maps each entry as written to its relocated reference.
	Images [][2]string
}

func (e *LayoutError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d image(s) were relocated without keeping their repository path, which a registry mirror cannot express:", len(e.Images))
	for _, im := range e.Images {
		fmt.Fprintf(&b, " %s -> %s;", im[0], im[1])
	}
	b.WriteString(" relocate with --layout path or --layout host, or use ferry webhook")
	return b.String()
}

// ErrNothingRelocated is returned for a lock without relocated entries.
var ErrNothingRelocated = fmt.Errorf("the lock has no relocated images: write it with ferry unpkg or ferry relocate --lock-output")

// Options say how nodes reach the registries: ferry's own
// --insecure-registry and --registry-ca-cert, for a mirror that serves
// plain HTTP or a certificate of a private CA.
type Options struct {
	// InsecureHosts are registries ("host" or "host:port"; a host without
	// a port stands for every port) that serve plain HTTP: containerd gets
	// an http:// host, CRI-O insecure = true.
	InsecureHosts []string
	// CACertFiles are PEM files of CAs that signed the mirrors'
	// certificates. containerd's hosts.toml names each by its absolute path,
	// where the nodes must find it too; for CRI-O the output says where
	// to put them (containers-certs.d(5)).
	CACertFiles []string
	// NeverContactSource (OpenShift mirror sets only) makes a pull the
	// mirrors cannot serve fail instead of going to the source registry.
	NeverContactSource bool
}

// check refuses a host with a scheme or path and a CA file that holds no
// PEM certificate, and makes the CA paths absolute.
func (o Options) check() (Options, error) {
	for _, h := range o.InsecureHosts {
		if h == "" || strings.ContainsAny(h, "/ ") {
			return o, fmt.Errorf("--insecure-registry %q: want a host or host:port, without scheme or path", h)
		}
	}
	var abs []string
	for _, f := range o.CACertFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			return o, fmt.Errorf("--registry-ca-cert: %w", err)
		}
		if !hasCert(b) {
			return o, fmt.Errorf("--registry-ca-cert %s: no PEM certificate in it; give the CA's certificate (-----BEGIN CERTIFICATE-----)", f)
		}
		a, err := filepath.Abs(f)
		if err != nil {
			return o, fmt.Errorf("--registry-ca-cert %s: %w", f, err)
		}
		abs = append(abs, a)
	}
	o.CACertFiles = abs
	return o, nil
}

func hasCert(b []byte) bool {
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return false
		}
		if blk.Type == "CERTIFICATE" {
			if _, err := x509.ParseCertificate(blk.Bytes); err == nil {
				return true
			}
		}
	}
}

// insecure reports whether host ("host" or "host:port") was named plain HTTP.
func (o Options) insecure(host string) bool {
	name := host
	if i := strings.LastIndex(host, ":"); i > 0 && !strings.HasSuffix(host, "]") {
		name = host[:i]
	}
	for _, h := range o.InsecureHosts {
		if h == host || h == name {
			return true
		}
	}
	return false
}

// dockerHub is how references name Docker Hub once normalised.
const dockerHub = "index.docker.io"

// FromLock groups the lock's relocated entries by source registry. The source
// is the entry's resolved reference, else the reference as written.
func FromLock(l *lock.File) ([]Registry, error) {
	type key struct{ src, host, prefix string }
	images := map[key][]string{}
	var layoutErr LayoutError
	for _, im := range l.Images {
		if im.Relocated == "" {
			continue
		}
		srcText := im.Resolved
		if srcText == "" {
			srcText = im.Image
		}
		src, err := imageref.Parse(srcText)
		if err != nil {
			return nil, fmt.Errorf("lock entry %q: %w", im.Image, err)
		}
		dst, err := imageref.Parse(im.Relocated)
		if err != nil {
			return nil, fmt.Errorf("lock entry %q: relocated: %w", im.Image, err)
		}
		srcPath, dstPath := src.Repo.RepositoryStr(), dst.Repo.RepositoryStr()
		var prefix string
		switch {
		case dstPath == srcPath:
		case strings.HasSuffix(dstPath, "/"+srcPath):
			prefix = strings.TrimSuffix(dstPath, "/"+srcPath)
		default:
			layoutErr.Images = append(layoutErr.Images, [2]string{im.Image, im.Relocated})
			continue
		}
		if src.Registry() == dst.Registry() && prefix == "" {
			// Relocated onto itself: nothing to mirror.
			continue
		}
		k := key{src: src.Registry(), host: dst.Registry(), prefix: prefix}
		images[k] = append(images[k], im.Image)
	}
	if len(layoutErr.Images) > 0 {
		return nil, &layoutErr
	}
	if len(images) == 0 {
		return nil, ErrNothingRelocated
	}
	bySource := map[string]*Registry{}
	for k, ims := range images {
		r := bySource[k.src]
		if r == nil {
			r = &Registry{Host: k.src, Server: "https://" + k.src}
			if k.src == dockerHub {
				// containerd and CRI-O name Docker Hub docker.io; its API lives elsewhere.
				r.Host, r.Server = "docker.io", "https://registry-1.docker.io"
			}
			bySource[k.src] = r
		}
		sort.Strings(ims)
		r.Mirrors = append(r.Mirrors, Mirror{Host: k.host, Prefix: k.prefix, Images: ims})
	}
	var out []Registry
	for _, r := range bySource {
		sort.Slice(r.Mirrors, func(i, j int) bool {
			a, b := r.Mirrors[i], r.Mirrors[j]
			if len(a.Images) != len(b.Images) {
				return len(a.Images) > len(b.Images)
			}
			return a.Location() < b.Location()
		})
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Host < out[j].Host })
	return out, nil
}

// HostsTOML renders containerd's hosts.toml for one source registry: the
// mirrors first, in order, then the registry itself as fallback. A mirror
// named in o.InsecureHosts is reached over plain HTTP; the others trust
// o.CACertFiles besides the system's CAs.
func HostsTOML(r Registry, o Options) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Written by ferry mirror-config: pulls of %s images try the relocated\n", r.Host)
	fmt.Fprintf(&b, "# registry first and fall back to %s itself.\n", r.Host)
	if len(r.Mirrors) > 1 {
		b.WriteString("# The lock relocated this registry's images under several prefixes; containerd\n")
		b.WriteString("# tries each host in turn until one has the image.\n")
	}
	server := r.Server
	if o.insecure(r.Host) {
		server = "http://" + strings.TrimPrefix(server, "https://")
	}
	fmt.Fprintf(&b, "server = %s\n", strconv.Quote(server))
	for _, m := range r.Mirrors {
		fmt.Fprintf(&b, "\n# %d image(s) of the lock, e.g. %s\n", len(m.Images), m.Images[0])
		scheme := "https://"
		if o.insecure(m.Host) {
			scheme = "http://"
			b.WriteString("# Plain HTTP (--insecure-registry).\n")
		}
		if m.Prefix == "" {
			fmt.Fprintf(&b, "[host.%s]\n", strconv.Quote(scheme+m.Host))
		} else {
			// With override_path the URL path is the API root, so the prefix
			// goes between /v2 and the repository path.
			fmt.Fprintf(&b, "[host.%s]\n", strconv.Quote(scheme+m.Host+"/v2/"+m.Prefix))
		}
		b.WriteString("  capabilities = [\"pull\", \"resolve\"]\n")
		if m.Prefix != "" {
			b.WriteString("  override_path = true\n")
		}
		if scheme == "https://" && len(o.CACertFiles) > 0 {
			// On the nodes, at this very path (--registry-ca-cert).
			q := make([]string, len(o.CACertFiles))
			for i, f := range o.CACertFiles {
				q[i] = strconv.Quote(f)
			}
			if len(q) == 1 {
				fmt.Fprintf(&b, "  ca = %s\n", q[0])
			} else {
				fmt.Fprintf(&b, "  ca = [%s]\n", strings.Join(q, ", "))
			}
		}
	}
	return b.Bytes()
}

// WriteContainerd writes DIR/<registry>/hosts.toml for every registry, each
// file atomically.
func WriteContainerd(dir string, regs []Registry, o Options) ([]string, error) {
	o, err := o.check()
	if err != nil {
		return nil, err
	}
	var written []string
	for _, r := range regs {
		sub := filepath.Join(dir, r.Host)
		if err := os.MkdirAll(sub, 0o755); err != nil {
			return written, fmt.Errorf("writing hosts.toml for %s: %w", r.Host, err)
		}
		path := filepath.Join(sub, "hosts.toml")
		if err := atomicfile.WriteBytes(path, 0o644, HostsTOML(r, o)); err != nil {
			return written, err
		}
		written = append(written, path)
	}
	return written, nil
}

// RegistriesConf renders CRI-O's (containers-registries.conf v2) entries: one
// [[registry]] per source registry with its mirrors. Mirrors serve pulls by
// digest only, since tags at the relocated registry may differ. A registry
// named in o.InsecureHosts gets insecure = true; where CRI-O looks for
// o.CACertFiles is said in a comment, since registries.conf cannot name them.
func RegistriesConf(w io.Writer, regs []Registry, o Options) error {
	o, err := o.check()
	if err != nil {
		return err
	}
	var b bytes.Buffer
	b.WriteString("# Written by ferry mirror-config: containers-registries.conf(5) version 2.\n")
	b.WriteString("# Pulls by digest try the relocated registry first, then the source registry.\n")
	for _, r := range regs {
		fmt.Fprintf(&b, "\n[[registry]]\nprefix = %s\nlocation = %s\n", strconv.Quote(r.Host), strconv.Quote(r.Host))
		if o.insecure(r.Host) {
			b.WriteString("insecure = true\n")
		}
		for _, m := range r.Mirrors {
			fmt.Fprintf(&b, "\n# %d image(s) of the lock, e.g. %s\n", len(m.Images), m.Images[0])
			insecure := o.insecure(m.Host)
			if !insecure {
				for _, f := range o.CACertFiles {
					fmt.Fprintf(&b, "# CA (--registry-ca-cert): copy %s to /etc/containers/certs.d/%s/ on each node, named *.crt\n", f, m.Host)
				}
			}
			fmt.Fprintf(&b, "[[registry.mirror]]\nlocation = %s\npull-from-mirror = \"digest-only\"\n", strconv.Quote(m.Location()))
			if insecure {
				b.WriteString("insecure = true\n")
			}
		}
	}
	_, err = w.Write(b.Bytes())
	return err
}
