package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

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

// TestCredentialHelperHangs: a credential helper that never answers (a
// keychain waiting for a password) neither holds ferry past Ctrl-C nor
// outlives it, gives up after --credential-helper-timeout with one line,
// and a helper that answers is asked once per registry, however many
// images come from there.
func TestCredentialHelperHangs(t *testing.T) {
	skipShort(t)
	dir := t.TempDir()
	opts := basicAuth(t, "ferry-hang")
	src, std := standardSourceWith(t, opts)
	ims := images(std, src.Host)[:4]
	lockPath := writeLock(t, dir, "images.lock.yaml", ims)
	bin := t.TempDir()
	pids := filepath.Join(bin, "pids")
	// The helper's shell and its sleep both log their pids.
	hang := fmt.Sprintf("#!/bin/sh\nsleep 45 &\necho $! >> %q\necho $$ >> %q\nwait\n", pids, pids)
	writeFile(t, filepath.Join(bin, "docker-credential-ferry-hang"), []byte(hang))
	if err := os.Chmod(filepath.Join(bin, "docker-credential-ferry-hang"), 0o755); err != nil {
		t.Fatal(err)
	}
	asked := filepath.Join(bin, "asked")
	credHelper(t, bin, asked, "ferry-count", src.Host, opts.Username, opts.Password)
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	cfg := t.TempDir()
	config := filepath.Join(cfg, "config.json")
	t.Setenv("DOCKER_CONFIG", cfg)
	useHelper := func(helper string) {
		writeFile(t, config, []byte(`{"credHelpers": {"`+src.Host+`": "`+helper+`"}}`))
	}
	ins := []string{"--insecure-registry", src.Host}

	t.Run("asked once", func(t *testing.T) {
		useHelper("ferry-count")
		testutil.MustFerry(t, dir, append([]string{"pkg", "--lock", lockPath, "-o", "bundle.tar"}, ins...)...)
		log, err := os.ReadFile(asked)
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(string(log), "ferry-count "+src.Host+"\n"); n != 1 || strings.Count(string(log), "\n") != 1 {
			t.Errorf("for %d images of one registry the helper was asked:\n%s\nwant once, for %s", len(ims), log, src.Host)
		}
	})

	t.Run("ctrl-c", func(t *testing.T) {
		useHelper("ferry-hang")
		_ = os.Remove(pids)
		r := start(t, dir, append([]string{"pkg", "--lock", lockPath, "-o", "hang.tar"}, ins...)...)
		if !r.waitFor(20*time.Second, func() bool { return len(helperPids(t, pids)) == 2 }) {
			t.Fatalf("the helper did not start; stderr:\n%s", r.stderr())
		}
		time.Sleep(300 * time.Millisecond) // ferry waits for the helper
		sent := time.Now()
		if err := r.cmd.Process.Signal(os.Interrupt); err != nil {
			t.Fatal(err)
		}
		select {
		case <-r.done:
		case <-time.After(10 * time.Second):
			t.Fatalf("ferry still runs 10s after SIGINT; stderr:\n%s", r.stderr())
		}
		if took := time.Since(sent); took > 1500*time.Millisecond {
			t.Errorf("ferry exited %s after SIGINT, want within a second", took)
		}
		if r.cmd.ProcessState.ExitCode() == 0 {
			t.Errorf("ferry exited 0 after SIGINT")
		}
		deadline := time.Now().Add(time.Second)
		for _, pid := range helperPids(t, pids) {
			for alive(pid) {
				if time.Now().After(deadline) {
					t.Errorf("helper process %d outlived ferry", pid)
					_ = syscall.Kill(pid, syscall.SIGKILL)
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
	})

	t.Run("timeout", func(t *testing.T) {
		useHelper("ferry-hang")
		_ = os.Remove(pids)
		res := testutil.RunFerry(t, dir, nil, append([]string{"pkg", "--lock", lockPath, "-o", "timeout.tar", "--credential-helper-timeout", "1s"}, ins...)...)
		lines := res.Lines()
		want := "credential helper docker-credential-ferry-hang for " + src.Host + " (named in " + config + "): no answer within 1s: "
		if res.Code != 1 || len(lines) != 1 || !strings.HasPrefix(lines[0], "error: ") || !strings.Contains(lines[0], want) || !strings.Contains(lines[0], "--credential-helper-timeout") {
			t.Errorf("exit %d, stderr:\n%s\nwant exit 1 and one error line holding\n%s", res.Code, res.Stderr, want)
		}
		if res.Took > 5*time.Second {
			t.Errorf("ferry took %s with a 1s helper timeout", res.Took)
		}
		if n := len(helperPids(t, pids)); n != 2 {
			t.Errorf("the helper was started %d times, want once", n/2)
		}
		for _, pid := range helperPids(t, pids) {
			if alive(pid) {
				t.Errorf("helper process %d outlived the timeout", pid)
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
}

// helperPids reads the pids the hanging helper logged.
func helperPids(t *testing.T, path string) []int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

// alive reports whether pid runs; a zombie waiting to be reaped does not.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(rest, "Z")
}

// TestPodmanAuthFiles takes a registry's password from where podman and
// skopeo keep it: --authfile, $REGISTRY_AUTH_FILE and
// ${XDG_RUNTIME_DIR}/containers/auth.json, with no Docker config; and
// --authfile wins over a Docker config with a wrong password.
func TestPodmanAuthFiles(t *testing.T) {
	skipShort(t)
	dir := t.TempDir()
	opts := basicAuth(t, "ferry-podman")
	src, std := standardSourceWith(t, opts)
	ims := images(std, src.Host)[:2]
	writeFile(t, filepath.Join(dir, "release.yaml"), podsYAML(ims))
	ins := []string{"--insecure-registry", src.Host}
	good := filepath.Join(dockerConfig(t, opts.Username, opts.Password, src.Host), "config.json")
	wrong := dockerConfig(t, opts.Username, "wrong-"+opts.Password, src.Host)
	empty := t.TempDir()
	// Not HOME: go build of the binary under test reads its caches there.
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())

	runtime := t.TempDir()
	authJSON, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(runtime, "containers"), 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(runtime, "containers", "auth.json"), authJSON)
	for _, c := range []struct {
		name                        string
		dockerConfig, authFile, xdg string
		args                        []string
	}{
		{"--authfile", empty, "", "", []string{"--authfile", good}},
		{"--authfile before a wrong Docker config", wrong, "", "", []string{"--authfile", good}},
		{"REGISTRY_AUTH_FILE", empty, good, "", nil},
		{"XDG_RUNTIME_DIR", empty, "", runtime, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("DOCKER_CONFIG", c.dockerConfig)
			t.Setenv("REGISTRY_AUTH_FILE", c.authFile)
			t.Setenv("XDG_RUNTIME_DIR", c.xdg)
			r := testutil.MustFerry(t, dir, append(append([]string{"resolve", "-f", "release.yaml", "-v"}, ins...), c.args...)...)
			if strings.Contains(r.Stdout+r.Stderr, opts.Password) {
				t.Errorf("the password appears in the output")
			}
		})
	}
	t.Setenv("DOCKER_CONFIG", empty)
	t.Setenv("REGISTRY_AUTH_FILE", "")
	t.Setenv("XDG_RUNTIME_DIR", "")
	if r := testutil.RunFerry(t, dir, nil, append([]string{"resolve", "-f", "release.yaml"}, ins...)...); r.Code != 1 || !strings.Contains(r.Stderr, "docker login "+src.Host) {
		t.Errorf("without credentials: exit %d, stderr:\n%s\nwant exit 1 and the login advice", r.Code, r.Stderr)
	}
}
