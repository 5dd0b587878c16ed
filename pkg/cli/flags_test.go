package cli

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestRegistryFlagsRefuse: the credential and token-realm flags of the
// registry group refuse what cannot work, in one line, before any
// registry is contacted.
func TestRegistryFlagsRefuse(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "auth.json")
	for _, c := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"helper timeout zero", []string{"--credential-helper-timeout", "0s"}, 2, "--credential-helper-timeout must be positive, got 0s"},
		{"authfile missing", []string{"--authfile", missing}, 1, "--authfile: stat " + missing + ": no such file or directory: give the credentials file podman login or skopeo login wrote"},
		{"token realm host with scheme", []string{"--token-realm-host", "https://auth.internal"}, 1, `--token-realm-host "https://auth.internal": want a host or host:port, without scheme or path`},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"resolve", "-f", "-"}, c.args...)
			stdout, stderr, code := runCLI(t, "image: 127.0.0.1:1/app:v1\n", args...)
			if code != c.code || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, c.want) || stdout != "" {
				t.Errorf("exit %d, stdout %q, stderr:\n%s\nwant exit %d and one line holding %q", code, stdout, stderr, c.code, c.want)
			}
		})
	}
}
