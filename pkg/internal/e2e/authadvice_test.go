package e2e

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/pkg/internal/testutil"
)

// TestWrongPasswordAdvice: every command that talks to a registry, given a
// wrong password, says in one line which registry refused and that
// 'docker login' is the way out, never the library's raw error details.
func TestWrongPasswordAdvice(t *testing.T) {
	skipShort(t)
	dir := t.TempDir()
	opts := basicAuth(t, "ferry-advice")
	src, std := standardSourceWith(t, opts)
	air := testutil.StartRegistryWith(t, opts)
	ims := images(std, src.Host)[:2]
	writeFile(t, filepath.Join(dir, "release.yaml"), podsYAML(ims))
	ins := []string{"--insecure-registry", src.Host, "--insecure-registry", air.Host}
	t.Setenv("DOCKER_CONFIG", dockerConfig(t, opts.Username, opts.Password, src.Host, air.Host))
	testutil.MustFerry(t, dir, append([]string{"resolve", "-f", "release.yaml", "--lock-output", "images.lock.yaml", "-o", "pinned.yaml"}, ins...)...)
	testutil.MustFerry(t, dir, append([]string{"pkg", "--lock", "images.lock.yaml", "-o", "bundle.tar"}, ins...)...)
	testutil.MustFerry(t, dir, append([]string{"unpkg", "-i", "bundle.tar", "--repository", air.Host + "/air", "--lock-output", "air.lock.yaml"}, ins...)...)

	t.Setenv("DOCKER_CONFIG", dockerConfig(t, opts.Username, "wrong-"+opts.Password, src.Host, air.Host))
	for _, c := range []struct {
		name string
		args []string
		host string
	}{
		{"verify --lock", []string{"verify", "--lock", "air.lock.yaml"}, air.Host},
		{"resolve", []string{"resolve", "-f", "release.yaml"}, src.Host},
		{"pkg", []string{"pkg", "--lock", "images.lock.yaml", "-o", "again.tar"}, src.Host},
		{"relocate", []string{"relocate", "--lock", "images.lock.yaml", "--repository", air.Host + "/moved"}, src.Host},
		{"unpkg", []string{"unpkg", "-i", "bundle.tar", "--repository", air.Host + "/again"}, air.Host},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := testutil.RunFerry(t, dir, nil, append(c.args, ins...)...)
			lines := r.Lines()
			want := c.host + " refused access (401 Unauthorized): log in with 'docker login " + c.host + "'"
			if r.Code != 1 || len(lines) != 1 || !strings.Contains(lines[0], want) {
				t.Errorf("exit %d, stderr:\n%s\nwant exit 1 and one line holding\n%s", r.Code, r.Stderr, want)
			}
			if strings.Contains(r.Stderr, "map[") || strings.Contains(r.Stderr, "UNAUTHORIZED") {
				t.Errorf("the library's raw error shows:\n%s", r.Stderr)
			}
		})
	}
}
