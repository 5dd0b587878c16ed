package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/pkg/internal/prereq"
	"github.com/ferry-dev/ferry/pkg/internal/testutil"
)

// mirrored is a source registry holding the standard set and a mirror
// (Debian's docker-registry) that ferry relocated part of it to, with the
// relocated lock; both registries still run.
type mirrored struct {
	dir         string
	src, mirror *testutil.Registry
	ims         []image
	// flags are the --insecure-registry and --registry-ca-cert flags that
	// reach both registries, for relocate and mirror-config alike.
	flags []string
	// ca is the mirror's CA (PEM), "" for plain HTTP.
	ca string
}

// relocateToMirror relocates an OCI index, a Docker manifest list and a
// schema2 image from a plain-HTTP source to a Debian registry under
// "mirror" (layout path), the mirror serving plain HTTP or, with tls,
// HTTPS with a certificate of a private CA.
func relocateToMirror(t *testing.T, tls bool) mirrored {
	t.Helper()
	m := mirrored{dir: t.TempDir()}
	var std testutil.Standard
	m.src, std = standardSource(t)
	mo := testutil.RegistryOptions{Kind: testutil.Debian}
	m.flags = []string{"--insecure-registry", m.src.Host}
	if tls {
		var cert, key string
		m.ca, cert, key = testutil.WriteTLS(t, t.TempDir())
		mo.TLSCert, mo.TLSKey = cert, key
	}
	m.mirror = testutil.StartRegistryWith(t, mo)
	if tls {
		m.flags = append(m.flags, "--registry-ca-cert", m.ca)
	} else {
		m.flags = append(m.flags, "--insecure-registry", m.mirror.Host)
	}
	all := images(std, m.src.Host)
	m.ims = []image{all[0], all[1], all[3]} // tekton/controller, library/nginx, team/api
	writeLock(t, m.dir, "images.lock.yaml", m.ims)
	testutil.MustFerry(t, m.dir, append([]string{"relocate", "--lock", "images.lock.yaml",
		"--repository", m.mirror.Host + "/mirror", "--lock-output", "relocated.lock.yaml"}, m.flags...)...)
	return m
}

// TestMirrorConfigContainerd lets containerd judge the hosts.toml files
// ferry writes: with the source registry stopped, ctr fetches each image
// by its source reference and digest through the hosts directory, and
// gets the source's manifest bytes and every blob; with the mirror
// stopped too, the same fetch fails, so the mirror served it. A plain
// HTTP mirror and one with a private CA.
func TestMirrorConfigContainerd(t *testing.T) {
	skipShort(t)
	for _, tc := range []struct {
		name string
		tls  bool
	}{{"plain HTTP", false}, {"private CA", true}} {
		t.Run(tc.name, func(t *testing.T) {
			ctrd := testutil.StartContainerd(t)
			m := relocateToMirror(t, tc.tls)
			hosts := filepath.Join(m.dir, "certs.d")
			testutil.MustFerry(t, m.dir, append([]string{"mirror-config", "--lock", "relocated.lock.yaml",
				"--format", "containerd", "--output-dir", hosts}, m.flags...)...)
			toml, err := os.ReadFile(filepath.Join(hosts, m.src.Host, "hosts.toml"))
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("hosts.toml:\n%s", toml)

			m.src.Stop()
			for _, im := range m.ims {
				ref := m.src.Host + "/" + im.repo + "@" + im.f.Digest
				if _, stderr, err := ctrd.Ctr(t, "-n", "through-mirror", "content", "fetch", "--all-platforms", "--hosts-dir", hosts, ref); err != nil {
					t.Fatalf("ctr content fetch %s with the source stopped: %v\n%s", ref, err, stderr)
				}
				got, stderr, err := ctrd.Ctr(t, "-n", "through-mirror", "content", "get", im.f.Digest)
				if err != nil {
					t.Fatalf("ctr content get %s: %v\n%s", im.f.Digest, err, stderr)
				}
				if sha([]byte(got)) != im.f.Digest || got != string(im.f.Manifest) {
					t.Errorf("%s: containerd stored %d bytes hashing to %s, want the source's %d bytes, %s", ref, len(got), sha([]byte(got)), len(im.f.Manifest), im.f.Digest)
				}
			}
			// Every manifest and blob of every platform arrived.
			list, _, err := ctrd.Ctr(t, "-n", "through-mirror", "content", "ls", "-q")
			if err != nil {
				t.Fatal(err)
			}
			for _, im := range m.ims {
				for _, d := range append(im.f.Manifests(), im.f.AllBlobs()...) {
					if !strings.Contains(list, d) {
						t.Errorf("%s: %s was not fetched", im.written, d)
					}
				}
			}
			// A tag resolves at the mirror too (capabilities "resolve"):
			// relocate pushed the tags as written.
			tagged := m.src.Host + "/" + m.ims[0].repo + ":" + m.ims[0].tag
			if _, stderr, err := ctrd.Ctr(t, "-n", "by-tag", "content", "fetch", "--all-platforms", "--hosts-dir", hosts, tagged); err != nil {
				t.Errorf("ctr content fetch %s with the source stopped: %v\n%s", tagged, err, stderr)
			}

			m.mirror.Stop()
			ref := m.src.Host + "/" + m.ims[1].repo + "@" + m.ims[1].f.Digest
			if _, stderr, err := ctrd.Ctr(t, "-n", "mirror-stopped", "content", "fetch", "--all-platforms", "--hosts-dir", hosts, ref); err == nil {
				t.Errorf("ctr content fetch %s succeeded with the source and the mirror stopped: something else served it\n%s", ref, stderr)
			}
		})
	}
}

// TestMirrorConfigContainersImage lets containers/image (skopeo, as CRI-O
// and Podman use it) judge the registries.conf ferry writes: with the
// source registry stopped, a reference to the source by digest is served
// by the mirror, the source's manifest bytes; the same image by tag is
// not, since ferry sends only digests to the mirror; with the mirror
// stopped too, the digest fails. A plain HTTP mirror and one with a
// private CA (given to skopeo as the certs.d directory the comment in the
// file names).
func TestMirrorConfigContainersImage(t *testing.T) {
	skipShort(t)
	skopeo, err := exec.LookPath("skopeo")
	if err != nil {
		prereq.SkipRequired(t, "skopeo not installed: apt-get install -y skopeo")
	}
	for _, tc := range []struct {
		name string
		tls  bool
	}{{"plain HTTP", false}, {"private CA", true}} {
		t.Run(tc.name, func(t *testing.T) {
			m := relocateToMirror(t, tc.tls)
			conf := filepath.Join(m.dir, "registries.conf")
			testutil.MustFerry(t, m.dir, append([]string{"mirror-config", "--lock", "relocated.lock.yaml",
				"--format", "crio", "--output-file", conf}, m.flags...)...)
			b, err := os.ReadFile(conf)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("registries.conf:\n%s", b)
			inspect := func(ref string) ([]byte, string, error) {
				args := []string{"--registries-conf", conf, "inspect", "--raw"}
				if m.ca != "" {
					// containers-certs.d(5): the CA as a *.crt file.
					certs := t.TempDir()
					pem, err := os.ReadFile(m.ca)
					if err != nil {
						t.Fatal(err)
					}
					writeFile(t, filepath.Join(certs, "ca.crt"), pem)
					args = append(args, "--cert-dir", certs)
				}
				ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
				defer cancel()
				cmd := exec.CommandContext(ctx, skopeo, append(args, "docker://"+ref)...)
				var stderr bytes.Buffer
				cmd.Stderr = &stderr
				out, err := cmd.Output()
				return out, stderr.String(), err
			}

			// OpenShift's mirror sets carry the mapping skopeo judges below
			// (the Machine Config Operator writes them into registries.conf):
			// the same source and mirror, for digests and, since relocate
			// pushed the tags, for tags.
			idms := testutil.MustFerry(t, m.dir, append([]string{"mirror-config", "--lock", "relocated.lock.yaml", "--format", "idms"}, m.flags...)...)
			docs := testutil.SplitYAML([]byte(idms.Stdout))
			if len(docs) != 2 {
				t.Errorf("mirror-config --format idms wrote %d objects, want 2:\n%s", len(docs), idms.Stdout)
			}
			for _, d := range docs {
				if err := testutil.CheckMirrorSet(d); err != nil {
					t.Errorf("mirror-config --format idms: %v", err)
				}
			}
			for _, kind := range []string{"ImageDigestMirrorSet", "ImageTagMirrorSet"} {
				want := "kind: " + kind + "\nmetadata:\n  name: ferry\nspec:\n  image" + strings.TrimPrefix(strings.TrimSuffix(kind, "Set"), "Image") + "s:\n" +
					"  - mirrors:\n    - " + m.mirror.Host + "/mirror\n    source: " + m.src.Host + "\n"
				if !strings.Contains(idms.Stdout, want) {
					t.Errorf("mirror-config --format idms lacks\n%s\nin\n%s", want, idms.Stdout)
				}
			}

			m.src.Stop()
			for _, im := range m.ims {
				ref := m.src.Host + "/" + im.repo + "@" + im.f.Digest
				got, stderr, err := inspect(ref)
				if err != nil {
					t.Fatalf("skopeo inspect --raw %s with the source stopped: %v\n%s", ref, err, stderr)
				}
				if !bytes.Equal(got, im.f.Manifest) {
					t.Errorf("%s: skopeo read %d bytes hashing to %s, want the source's %d bytes, %s", ref, len(got), sha(got), len(im.f.Manifest), im.f.Digest)
				}
			}
			// By tag: mirror-by-digest-only keeps it away from the mirror,
			// and the source is down.
			tagged := m.src.Host + "/" + m.ims[0].repo + ":" + m.ims[0].tag
			if _, stderr, err := inspect(tagged); err == nil {
				t.Errorf("skopeo inspect %s succeeded with the source stopped: the mirror answered a pull by tag", tagged)
			} else {
				t.Logf("skopeo inspect %s, as it should, fails: %s", tagged, stderr)
			}

			m.mirror.Stop()
			ref := m.src.Host + "/" + m.ims[1].repo + "@" + m.ims[1].f.Digest
			if _, _, err := inspect(ref); err == nil {
				t.Errorf("skopeo inspect %s succeeded with the source and the mirror stopped: something else served it", ref)
			}
		})
	}
}
