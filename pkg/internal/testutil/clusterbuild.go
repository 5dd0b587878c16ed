package testutil

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"
)

// The API server, kubectl and etcd the cluster tests run: the one place
// their versions are pinned. k8s.io/kubernetes is not meant to be required
// by other modules: its go.mod replaces each of its staging modules
// (k8s.io/api, k8s.io/apimachinery, ...) by a directory of its own tree,
// which the module proxy does not serve. A scratch module that requires it
// and replaces each staging module by the same module at StagingVersion,
// its published twin, builds it.
const (
	kubernetesModule = "k8s.io/kubernetes"
	// KubernetesVersion is the version of kube-apiserver and kubectl.
	KubernetesVersion = "v1.35.4"
	// stagingVersion is the version k8s.io/kubernetes KubernetesVersion
	// publishes its staging modules at.
	stagingVersion = "v0.35.4"
	etcdModule     = "go.etcd.io/etcd/server/v3"
	// EtcdVersion is the etcd server built beside them (the version
	// kubernetes KubernetesVersion requires).
	EtcdVersion = "v3.6.5"
	// clusterModule names the scratch module.
	clusterModule = "ferry.test/cluster"
	// clusterGoVersion is the go line of the scratch module (the one
	// kubernetes KubernetesVersion asks for).
	clusterGoVersion = "1.25.0"
)

// clusterBuildTimeout bounds the build of the three binaries: about 20
// minutes on 2 idle cores with an empty build cache, a minute or two with
// a warm one.
const clusterBuildTimeout = 60 * time.Minute

// ClusterBinaries are the programs a test cluster runs.
type ClusterBinaries struct {
	APIServer, Kubectl, Etcd string
}

// clusterDir is where the cluster binaries are cached.
func clusterDir() string {
	return filepath.Join(ToolsDir(), filepath.FromSlash(kubernetesModule+"@"+KubernetesVersion))
}

// clusterBinaries are the cached binaries' paths, and whether all three
// are there.
func clusterBinaries() (ClusterBinaries, bool) {
	dir := clusterDir()
	exe := ""
	if runtime.GOOS == "windows" {
		exe = ".exe"
	}
	b := ClusterBinaries{
		APIServer: filepath.Join(dir, "kube-apiserver"+exe),
		Kubectl:   filepath.Join(dir, "kubectl"+exe),
		Etcd:      filepath.Join(dir, "etcd"+exe),
	}
	return b, isFile(b.APIServer) && isFile(b.Kubectl) && isFile(b.Etcd)
}

// BuildCluster returns kube-apiserver, kubectl and etcd, building them on
// first use into ToolsDir (about 20 minutes on 2 cores the first time,
// then cached; `make test-cluster` runs it). As buildTool does, it holds a
// lock file while building, so that processes running at once wait for one
// build, and removes the scratch directories of builds cut short.
func BuildCluster() (ClusterBinaries, error) {
	b, ok := clusterBinaries()
	if ok {
		return b, nil
	}
	dir := clusterDir()
	what := fmt.Sprintf("kube-apiserver and kubectl %s, etcd %s", KubernetesVersion, EtcdVersion)
	fail := func(err error) (ClusterBinaries, error) {
		return ClusterBinaries{}, fmt.Errorf("building the test cluster (%s): %w", what, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fail(fmt.Errorf("%w (set %s to a writable directory)", err, ToolsDirEnv))
	}
	unlock, err := lockDir(filepath.Join(dir, ".lock"))
	if err != nil {
		return fail(err)
	}
	defer unlock()
	if b, ok := clusterBinaries(); ok {
		return b, nil
	}
	if stale, _ := filepath.Glob(filepath.Join(dir, ".build-*")); len(stale) > 0 {
		for _, d := range stale {
			_ = os.RemoveAll(d)
		}
	}
	tmp, err := os.MkdirTemp(dir, ".build-")
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(tmp)
	ctx, cancel := context.WithTimeout(context.Background(), clusterBuildTimeout)
	defer cancel()
	fmt.Fprintf(os.Stderr, "testutil: building %s once into %s (about 20 minutes on 2 cores the first time)\n", what, dir)
	start := time.Now()
	if err := buildClusterIn(ctx, tmp); err != nil {
		return fail(err)
	}
	for _, name := range []string{"etcd", "kubectl", "kube-apiserver"} {
		if runtime.GOOS == "windows" {
			name += ".exe"
		}
		if err := os.Rename(filepath.Join(tmp, "bin", name), filepath.Join(dir, name)); err != nil {
			return fail(err)
		}
	}
	fmt.Fprintf(os.Stderr, "testutil: built %s in %v\n", what, time.Since(start).Round(time.Second))
	b, _ = clusterBinaries()
	return b, nil
}

// buildClusterIn writes the scratch module into dir and builds the three
// binaries into dir/bin. The flags are those the binaries were first built
// with by hand, so that Go's build cache serves a rebuild.
func buildClusterIn(ctx context.Context, dir string) error {
	env := append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off", "CGO_ENABLED=0")
	run := func(args ...string) ([]byte, error) {
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir, cmd.Env = dir, env
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			logPath := filepath.Join(filepath.Dir(dir), "build.log")
			_ = os.WriteFile(logPath, append(stdout.Bytes(), stderr.Bytes()...), 0o644)
			return nil, fmt.Errorf("go %s: %v: %s (full log: %s; the first build needs the Go module proxy)", strings.Join(args, " "), err, lastLine(stderr.String()), logPath)
		}
		return stdout.Bytes(), nil
	}
	// The staging modules are read from kubernetes' own go.mod, so that
	// the list cannot drift from the version pinned.
	out, err := run("mod", "download", "-json", kubernetesModule+"@"+KubernetesVersion)
	if err != nil {
		return err
	}
	var dl struct{ GoMod, Error string }
	if err := json.Unmarshal(out, &dl); err != nil {
		return fmt.Errorf("reading go mod download's answer: %w", err)
	}
	if dl.Error != "" {
		return fmt.Errorf("downloading %s@%s: %s", kubernetesModule, KubernetesVersion, dl.Error)
	}
	kgomod, err := os.ReadFile(dl.GoMod)
	if err != nil {
		return err
	}
	gomod, err := clusterGoMod(kgomod)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), gomod, 0o644); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dir, "etcd"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "etcd", "main.go"), []byte(etcdMain), 0o644); err != nil {
		return err
	}
	if _, err := run("get", etcdModule+"@"+EtcdVersion); err != nil {
		return err
	}
	_, err = run("build", "-trimpath", "-o", "bin/", kubernetesModule+"/cmd/kube-apiserver", kubernetesModule+"/cmd/kubectl", "./etcd")
	return err
}

// etcdMain is etcd's command, built from its server module.
const etcdMain = `package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
`

// clusterGoMod renders the scratch module's go.mod from kubernetes' own:
// it requires kubernetes and replaces each module kubernetes takes from
// its ./staging directory by the published module at stagingVersion.
func clusterGoMod(kubernetesGoMod []byte) ([]byte, error) {
	staging := stagingModules(kubernetesGoMod)
	if len(staging) == 0 {
		return nil, fmt.Errorf("%s@%s's go.mod replaces no module by a ./staging directory: the recipe no longer fits this version", kubernetesModule, KubernetesVersion)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "module %s\n\ngo %s\n\nrequire %s %s\n\nreplace (\n", clusterModule, clusterGoVersion, kubernetesModule, KubernetesVersion)
	for _, m := range staging {
		fmt.Fprintf(&b, "\t%s => %s %s\n", m, m, stagingVersion)
	}
	b.WriteString(")\n")
	return []byte(b.String()), nil
}

// stagingModules lists, sorted, the modules a go.mod replaces by a
// directory under ./staging/, in a replace block or on replace lines.
func stagingModules(gomod []byte) []string {
	var mods []string
	for _, line := range strings.Split(string(gomod), "\n") {
		line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "replace "))
		f := strings.Fields(line)
		if len(f) == 3 && f[1] == "=>" && strings.HasPrefix(f[2], "./staging/") {
			mods = append(mods, f[0])
		}
	}
	sort.Strings(mods)
	return mods
}
