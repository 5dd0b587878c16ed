package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/pkg/internal/testutil"
)

// credHelper writes docker-credential-NAME into bin: a shell script that
// logs "NAME SERVER" to asked for each get, answers user:pass for host and
// "not found" for any other server, the way docker-credential-pass does.
func credHelper(t *testing.T, bin, asked, name, host, user, pass string) {
	t.Helper()
	script := fmt.Sprintf(`#!/bin/sh
[ "$1" = get ] || exit 1
read -r server
echo "%s $server" >> %q
if [ "$server" = %q ]; then
	printf '{"ServerURL":"%%s","Username":"%%s","Secret":"%%s"}\n' "$server" %q %q
else
	echo "credentials not found in native keychain"
	exit 1
fi
`, name, asked, host, user, pass)
	path := filepath.Join(bin, "docker-credential-"+name)
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
}

// TestCredentialHelpers takes the credentials from Docker credential
// helpers, as on a workstation with a keychain: credHelpers names one for
// the source registry, credsStore the default one for the rest. Both
// registries want basic auth; the bundle goes from one to the other, what
// landed is read from the target's storage, and the password appears in
// no output. A helper that fails is reported in one line naming it.
func TestCredentialHelpers(t *testing.T) {
	skipShort(t)
	dir := t.TempDir()
	opts := basicAuth(t, "ferry-helper")
	user, pass := opts.Username, opts.Password
	src, std := standardSourceWith(t, opts)
	air := testutil.StartRegistryWith(t, opts)
	ims := images(std, src.Host)[:4]
	lockPath := writeLock(t, dir, "images.lock.yaml", ims)

	bin := t.TempDir()
	asked := filepath.Join(bin, "asked")
	credHelper(t, bin, asked, "ferry-per-host", src.Host, user, pass)
	credHelper(t, bin, asked, "ferry-store", air.Host, user, pass)
	cfg := t.TempDir()
	b, err := json.Marshal(map[string]any{"credHelpers": map[string]string{src.Host: "ferry-per-host"}, "credsStore": "ferry-store"})
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(cfg, "config.json"), b)
	t.Setenv("DOCKER_CONFIG", cfg)
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	ins := []string{"--insecure-registry", src.Host, "--insecure-registry", air.Host, "-v"}

	outputs := []testutil.Result{
		testutil.MustFerry(t, dir, append([]string{"pkg", "--lock", lockPath, "-o", "bundle.tar"}, ins...)...),
		testutil.MustFerry(t, dir, append([]string{"unpkg", "-i", "bundle.tar", "--repository", air.Host + "/air", "--lock-output", "air.lock.yaml"}, ins...)...),
	}
	if b, m, mf, tags := readState(t, air.StorageDir).missing("air", ims); b+m+mf+tags != 0 {
		t.Errorf("the target lacks %d blobs, %d links, %d manifests and %d tags after unpkg", b, m, mf, tags)
	}
	log, err := os.ReadFile(asked)
	if err != nil {
		t.Fatalf("no helper was asked for credentials: %v", err)
	}
	for _, want := range []string{"ferry-per-host " + src.Host, "ferry-store " + air.Host} {
		if !strings.Contains(string(log), want+"\n") {
			t.Errorf("helpers were asked:\n%s\nwant a line %q", log, want)
		}
	}
	if strings.Contains(string(log), "ferry-store "+src.Host) {
		t.Errorf("the default store was asked for %s, which credHelpers names another helper for:\n%s", src.Host, log)
	}

	// A helper missing from PATH, or one that fails, stops the run with
	// one line naming the registry, the helper's words and the config.
	locked := filepath.Join(bin, "docker-credential-ferry-locked")
	if err := os.WriteFile(locked, []byte("#!/bin/sh\necho 'the keychain is locked'\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for helper, says := range map[string]string{"ferry-gone": `"docker-credential-ferry-gone": executable file not found`, "ferry-locked": `: exit status 1 (it said "the keychain is locked")`} {
		writeFile(t, filepath.Join(cfg, "config.json"), []byte(`{"credHelpers": {"`+src.Host+`": "`+helper+`"}}`))
		r := testutil.RunFerry(t, dir, nil, append([]string{"pkg", "--lock", lockPath, "-o", "again.tar"}, ins[:4]...)...)
		outputs = append(outputs, r)
		lines := strings.Split(strings.TrimSpace(r.Stderr), "\n")
		if r.Code != 1 || len(lines) != 1 || !strings.HasPrefix(lines[0], "error: ") ||
			!strings.Contains(lines[0], "credential helper docker-credential-"+helper+" for "+src.Host+" (named in "+filepath.Join(cfg, "config.json")+")") || !strings.Contains(lines[0], says) {
			t.Errorf("pkg with helper %s: exit %d, stderr:\n%s\nwant exit 1 and one error line naming %s, %q and the config file", helper, r.Code, r.Stderr, src.Host, says)
		}
		if exists(t, filepath.Join(dir, "again.tar")) {
			t.Errorf("helper %s: a bundle was written without credentials", helper)
		}
	}

	for i, r := range outputs {
		for where, s := range map[string]string{"stdout": r.Stdout, "stderr": r.Stderr} {
			if strings.Contains(s, pass) {
				t.Errorf("the password appears in the %s of run %d", where, i)
			}
		}
	}
	if bundle, err := os.ReadFile(filepath.Join(dir, "bundle.tar")); err != nil || bytes.Contains(bundle, []byte(pass)) {
		t.Errorf("bundle.tar: %v, or it holds the password", err)
	}
}
