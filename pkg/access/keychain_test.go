package access

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

func TestLoginCommand(t *testing.T) {
	for reg, want := range map[string]string{
		name.DefaultRegistry:     "docker login docker.io",
		"registry.internal:5000": "docker login registry.internal:5000",
	} {
		if got := LoginCommand(reg); got != want {
			t.Errorf("LoginCommand(%q) = %q, want %q", reg, got, want)
		}
	}
}

// credEnv empties every place credentials are read from, so a test sees
// only the files it writes.
func credEnv(t *testing.T) (home string) {
	t.Helper()
	home = t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("DOCKER_CONFIG", "")
	t.Setenv("REGISTRY_AUTH_FILE", "")
	t.Setenv("XDG_RUNTIME_DIR", "")
	t.Setenv("XDG_CONFIG_HOME", "")
	return home
}

// writeAuth writes a Docker-format file giving user for host.
func writeAuth(t *testing.T, path, host, user string) {
	t.Helper()
	b, err := json.Marshal(map[string]any{"auths": map[string]any{
		host: map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(user + ":pw-" + user))},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// userFor resolves host's credentials through a new client's keychain.
func userFor(t *testing.T, o Options, host string) string {
	t.Helper()
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := name.NewRegistry(host)
	if err != nil {
		t.Fatal(err)
	}
	a, err := authn.Resolve(t.Context(), c.Keychain(), reg)
	if err != nil {
		t.Fatal(err)
	}
	ac, err := a.Authorization()
	if err != nil {
		t.Fatal(err)
	}
	if ac.Username != "" && ac.Password != "pw-"+ac.Username {
		t.Errorf("user %s has password %q", ac.Username, ac.Password)
	}
	return ac.Username
}

// TestAuthFileOrder: each place docker, podman and skopeo keep credentials
// is read, and for a registry several of them know, --authfile wins, then
// the Docker config, then $REGISTRY_AUTH_FILE, then
// ${XDG_RUNTIME_DIR}/containers/auth.json.
func TestAuthFileOrder(t *testing.T) {
	const host = "registry.example:5000"
	type source struct{ name, file string }
	sources := []source{{"authfile", "explicit.json"}, {"docker", "docker/config.json"}, {"registry-auth-file", "podman-auth.json"}, {"xdg-runtime", "run/containers/auth.json"}}
	for _, c := range []struct {
		name    string
		present []string // sources that know host
		want    string
	}{
		{"docker config alone", []string{"docker"}, "docker"},
		{"REGISTRY_AUTH_FILE alone", []string{"registry-auth-file"}, "registry-auth-file"},
		{"XDG_RUNTIME_DIR alone", []string{"xdg-runtime"}, "xdg-runtime"},
		{"authfile alone", []string{"authfile"}, "authfile"},
		{"authfile before all", []string{"authfile", "docker", "registry-auth-file", "xdg-runtime"}, "authfile"},
		{"docker before podman's", []string{"docker", "registry-auth-file", "xdg-runtime"}, "docker"},
		{"REGISTRY_AUTH_FILE before XDG_RUNTIME_DIR", []string{"registry-auth-file", "xdg-runtime"}, "registry-auth-file"},
		{"none", nil, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			credEnv(t)
			dir := t.TempDir()
			t.Setenv("DOCKER_CONFIG", filepath.Join(dir, "docker"))
			t.Setenv("REGISTRY_AUTH_FILE", filepath.Join(dir, "podman-auth.json"))
			t.Setenv("XDG_RUNTIME_DIR", filepath.Join(dir, "run"))
			for _, s := range sources {
				// Every file exists; only some know host.
				h := "other.example"
				for _, p := range c.present {
					if p == s.name {
						h = host
					}
				}
				writeAuth(t, filepath.Join(dir, s.file), h, s.name)
			}
			got := userFor(t, Options{AuthFile: filepath.Join(dir, "explicit.json")}, host)
			if got != c.want {
				t.Errorf("credentials came from %q, want %q", got, c.want)
			}
		})
	}
}

// TestAuthEntries: the keys and fields docker and podman write are read.
func TestAuthEntries(t *testing.T) {
	for _, c := range []struct {
		name, host, config, want string
	}{
		{"auth field", "r.example", `{"auths":{"r.example":{"auth":"` + base64.StdEncoding.EncodeToString([]byte("a:pw-a")) + `"}}}`, "a"},
		{"username and password", "r.example", `{"auths":{"r.example":{"username":"b","password":"pw-b"}}}`, "b"},
		{"URL key", "r.example:5000", `{"auths":{"https://r.example:5000/v1/":{"username":"c","password":"pw-c"}}}`, "c"},
		{"Docker Hub's key", name.DefaultRegistry, `{"auths":{"https://index.docker.io/v1/":{"username":"d","password":"pw-d"}}}`, "d"},
		{"podman's Docker Hub key", name.DefaultRegistry, `{"auths":{"docker.io":{"username":"e","password":"pw-e"}}}`, "e"},
		{"other host", "r.example", `{"auths":{"s.example":{"username":"f","password":"pw-f"}}}`, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			credEnv(t)
			f := filepath.Join(t.TempDir(), "auth.json")
			if err := os.WriteFile(f, []byte(c.config), 0o600); err != nil {
				t.Fatal(err)
			}
			if got := userFor(t, Options{AuthFile: f}, c.host); got != c.want {
				t.Errorf("user %q, want %q", got, c.want)
			}
		})
	}
}

func TestAuthFileMissing(t *testing.T) {
	credEnv(t)
	_, err := New(Options{AuthFile: filepath.Join(t.TempDir(), "nope.json")})
	if err == nil || !strings.Contains(err.Error(), "--authfile") || !strings.Contains(err.Error(), "nope.json") {
		t.Errorf("New with a missing --authfile: %v, want an error naming the flag and the file", err)
	}
}

// helperBin writes docker-credential-NAME scripts into a directory put
// first on PATH, and a Docker config naming helper for host.
func helperBin(t *testing.T, host, helper string, scripts map[string]string) (config string) {
	t.Helper()
	credEnv(t)
	bin := t.TempDir()
	for n, body := range scripts {
		if err := os.WriteFile(filepath.Join(bin, "docker-credential-"+n), []byte("#!/bin/sh\n"+body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	cfg := t.TempDir()
	t.Setenv("DOCKER_CONFIG", cfg)
	config = filepath.Join(cfg, "config.json")
	if err := os.WriteFile(config, []byte(`{"credHelpers":{"`+host+`":"`+helper+`"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	return config
}

// TestCredentialHelperFailures: a helper that hangs, answers nothing, cuts
// its answer short, fails or is missing gives one line naming the helper,
// the registry and the config file, and what to do; its secret never.
func TestCredentialHelperFailures(t *testing.T) {
	const host = "registry.example:5000"
	scripts := map[string]string{
		"hang":   "sleep 30\n",
		"empty":  "exit 0\n",
		"cut":    `printf '{"Username":"u","Secret":"s3cr'` + "\n",
		"locked": "echo 'the keychain is locked'\nexit 1\n",
		"leaky":  `echo '{"Username":"u","Secret":"s3cr3t"}'` + "\nexit 3\n",
	}
	for _, c := range []struct{ helper, want string }{
		{"hang", "no answer within 300ms: check that 'echo registry.example:5000 | docker-credential-hang get' answers"},
		{"empty", "it answered nothing: check that"},
		{"cut", "its answer is not valid JSON (unexpected end of JSON input): check that"},
		{"locked", `exit status 1 (it said "the keychain is locked"): fix the credHelpers and credsStore entries of`},
		{"leaky", `exit status 3: fix the credHelpers`},
		{"gone", `"docker-credential-gone": executable file not found in $PATH: install it on PATH, or fix`},
	} {
		t.Run(c.helper, func(t *testing.T) {
			config := helperBin(t, host, c.helper, scripts)
			cl, err := New(Options{CredentialHelperTimeout: 300 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			reg, _ := name.NewRegistry(host)
			start := time.Now()
			_, err = authn.Resolve(t.Context(), cl.Keychain(), reg)
			if took := time.Since(start); took > 3*time.Second {
				t.Errorf("the helper held the run for %s", took)
			}
			var he *HelperError
			if !errors.As(err, &he) {
				t.Fatalf("got %v, want a *HelperError", err)
			}
			msg := err.Error()
			prefix := "credential helper docker-credential-" + c.helper + " for " + host + " (named in " + config + "): "
			if !strings.HasPrefix(msg, prefix) || !strings.Contains(msg, c.want) || strings.Contains(msg, "\n") {
				t.Errorf("got\n%s\nwant one line starting with\n%s\nand holding\n%s", msg, prefix, c.want)
			}
			if strings.Contains(msg, "s3cr") {
				t.Errorf("the helper's secret appears in %s", msg)
			}
		})
	}
}

// TestCredentialHelperAskedOnce: however many repositories of a registry a
// run touches, at the same time or one after the other, the helper is
// asked once; a failure is kept too.
func TestCredentialHelperAskedOnce(t *testing.T) {
	const host = "registry.example:5000"
	for _, c := range []struct {
		name, script string
		fails        bool
	}{
		{"answers", `printf '{"Username":"u","Secret":"pw-u"}'` + "\n", false},
		{"fails", "echo 'the keychain is locked'\nexit 1\n", true},
		{"not found", "echo 'credentials not found in native keychain'\nexit 1\n", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			asked := filepath.Join(t.TempDir(), "asked")
			helperBin(t, host, "count", map[string]string{"count": "echo asked >> " + strconv.Quote(asked) + "\nsleep 0.2\n" + c.script})
			cl, err := New(Options{})
			if err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			errs := make([]error, 6)
			for i := range errs {
				wg.Go(func() {
					repo, _ := name.NewRepository(host + "/team/app" + strconv.Itoa(i%3))
					_, errs[i] = authn.Resolve(t.Context(), cl.Keychain(), repo)
				})
			}
			wg.Wait()
			repo, _ := name.NewRepository(host + "/later")
			_, last := authn.Resolve(t.Context(), cl.Keychain(), repo)
			for _, err := range append(errs, last) {
				if (err != nil) != c.fails {
					t.Errorf("resolve: %v, want failure %v", err, c.fails)
				}
			}
			b, err := os.ReadFile(asked)
			if err != nil {
				t.Fatal(err)
			}
			if n := strings.Count(string(b), "asked"); n != 1 {
				t.Errorf("the helper was asked %d times, want 1", n)
			}
		})
	}
}

// TestCredentialHelperCancel: when the run's context ends, the helper and
// what it started are killed at once.
func TestCredentialHelperCancel(t *testing.T) {
	const host = "registry.example:5000"
	pidFile := filepath.Join(t.TempDir(), "pid")
	helperBin(t, host, "hang", map[string]string{"hang": "sleep 30 &\necho $! > " + strconv.Quote(pidFile) + "\nwait\n"})
	cl, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() {
		for !fileHas(pidFile) {
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
	}()
	reg, _ := name.NewRegistry(host)
	start := time.Now()
	_, err = authn.Resolve(ctx, cl.Keychain(), reg)
	took := time.Since(start)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
	if took > 2*time.Second {
		t.Errorf("resolve returned %s after start, want well within a second of the cancel", took)
	}
	b, _ := os.ReadFile(pidFile)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("pid file: %v", err)
	}
	deadline := time.Now().Add(time.Second)
	for processAlive(pid) {
		if time.Now().After(deadline) {
			t.Errorf("the helper's child %d is still running", pid)
			killProcess(pid)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func fileHas(path string) bool {
	b, err := os.ReadFile(path)
	return err == nil && strings.TrimSpace(string(b)) != ""
}

// processAlive reports whether pid runs; a zombie waiting for a parent to
// reap it does not count.
func processAlive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(rest, "Z")
}

func killProcess(pid int) {
	if p, err := os.FindProcess(pid); err == nil {
		_ = p.Kill()
	}
}

// TestCredentialHelperCancelNotKept: a caller whose context ends while the
// helper runs does not leave its cancellation as the registry's answer for
// a caller whose context is still live.
func TestCredentialHelperCancelNotKept(t *testing.T) {
	const host = "registry.example:5000"
	asked := filepath.Join(t.TempDir(), "asked")
	helperBin(t, host, "slow", map[string]string{"slow": "echo asked >> " + strconv.Quote(asked) + "\nsleep 0.5\nprintf '{\"Username\":\"u\",\"Secret\":\"pw-u\"}'\n"})
	cl, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	reg, _ := name.NewRegistry(host)
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := authn.Resolve(ctx, cl.Keychain(), reg)
		done <- err
	}()
	for !fileHas(asked) {
		time.Sleep(5 * time.Millisecond)
	}
	a, err := authn.Resolve(t.Context(), cl.Keychain(), reg)
	if err != nil {
		t.Fatalf("the live caller got %v", err)
	}
	if ac, err := a.Authorization(); err != nil || ac.Username != "u" {
		t.Errorf("the live caller got %+v, %v, want user u", ac, err)
	}
	if err := <-done; !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("the caller that gave up got %v, want its deadline", err)
	}
}
