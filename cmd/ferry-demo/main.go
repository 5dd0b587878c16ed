// Command ferry-demo shows ferry's whole job on a laptop with no network:
// it starts a "public" and an "air-gapped" registry on loopback, pushes
// sample multi-arch images, writes a release.yaml, and runs the real ferry
// binary through resolve, pkg, unpkg, verify and rewrite (make demo).
package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	work, err := os.MkdirTemp("", "ferry-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	step("building ferry")
	bin := filepath.Join(work, "ferry")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/ferry")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("building ferry: %w", err)
	}

	public, err := serve(ctx)
	if err != nil {
		return err
	}
	airgap, err := serve(ctx)
	if err != nil {
		return err
	}
	step(fmt.Sprintf("started a \"public\" registry at %s and an \"air-gapped\" one at %s (in process, loopback only)", public, airgap))

	if err := pushSamples(ctx, public); err != nil {
		return err
	}
	release := filepath.Join(work, "release.yaml")
	if err := os.WriteFile(release, []byte(releaseYAML(public)), 0o644); err != nil {
		return err
	}
	step("wrote release.yaml naming three images (one multi-arch OCI index, one Docker manifest list, one plain image):")
	fmt.Print(releaseYAML(public))

	f := func(args ...string) error { return ferry(ctx, bin, work, args...) }
	ins := []string{"--insecure-registry", public, "--insecure-registry", airgap}
	steps := [][]string{
		{"scan", "-f", "release.yaml"},
		append([]string{"resolve", "-f", "release.yaml", "--lock-output", "images.lock.yaml", "--output-file", "release.pinned.yaml"}, ins...),
		{"pkg", "--lock", "images.lock.yaml", "--bundle", "bundle.tar", "--insecure-registry", public},
		{"inspect", "-i", "bundle.tar"},
		{"verify", "-i", "bundle.tar"},
		{"unpkg", "-i", "bundle.tar", "--repository", airgap + "/mirror", "--lock-output", "relocated.lock.yaml", "--insecure-registry", airgap},
		{"verify", "--lock", "relocated.lock.yaml", "--insecure-registry", airgap},
		{"rewrite", "-f", "release.yaml", "--lock", "relocated.lock.yaml"},
	}
	for _, s := range steps {
		if err := f(s...); err != nil {
			return err
		}
	}
	step("done: every image now lives in the air-gapped registry under the same digests, and the release points at it")

	// The monthly update: busybox moves to 1.37; the delta leaves out every
	// blob relocated.lock.yaml says is inside.
	v2 := strings.ReplaceAll(releaseYAML(public), "busybox:1.36", "busybox:1.37")
	if err := os.WriteFile(filepath.Join(work, "release-v2.yaml"), []byte(v2), 0o644); err != nil {
		return err
	}
	step("next month: release-v2.yaml moves busybox to 1.37; bundle only what the air gap lacks")
	for _, s := range [][]string{
		{"pkg", "-f", "release-v2.yaml", "--bundle", "delta.tar", "--have", "relocated.lock.yaml", "--insecure-registry", public},
		{"inspect", "-i", "delta.tar"},
		{"unpkg", "-i", "delta.tar", "--repository", airgap + "/mirror", "--lock-output", "relocated-v2.lock.yaml", "--insecure-registry", airgap},
	} {
		if err := f(s...); err != nil {
			return err
		}
	}
	step("done: the update carried the new layer and the manifests, nothing the air gap already held")
	return nil
}

func step(s string) { fmt.Printf("\n==> %s\n", s) }

// ferry runs the real binary in dir, echoing the command line first.
func ferry(ctx context.Context, bin, dir string, args ...string) error {
	fmt.Printf("\n$ ferry %s\n", strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stdout
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("ferry %s: %w", strings.Join(args, " "), err)
	}
	return nil
}

// serve starts an in-memory registry on a free loopback port.
func serve(ctx context.Context) (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: registry.New(registry.Logger(log.New(io.Discard, "", 0))), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(l)
	go func() { <-ctx.Done(); srv.Close() }()
	return l.Addr().String(), nil
}

func pushSamples(ctx context.Context, host string) error {
	opts := []remote.Option{remote.WithContext(ctx)}
	ref := func(s string) name.Reference {
		r, _ := name.ParseReference(host+"/"+s, name.Insecure)
		return r
	}
	// A multi-arch OCI index with three platforms.
	var idx v1.ImageIndex = empty.Index
	for _, arch := range []string{"amd64", "arm64", "s390x"} {
		img, err := random.Image(64<<10, 2)
		if err != nil {
			return err
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
	}
	if err := remote.WriteIndex(ref("tekton-releases/pipeline/controller:v0.53.2"), idx, opts...); err != nil {
		return err
	}
	// A Docker manifest list with two platforms.
	var list v1.ImageIndex = mutate.IndexMediaType(empty.Index, types.DockerManifestList)
	for _, arch := range []string{"amd64", "arm64"} {
		img, err := random.Image(32<<10, 1)
		if err != nil {
			return err
		}
		img = mutate.MediaType(img, types.DockerManifestSchema2)
		list = mutate.AppendManifests(list, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
	}
	if err := remote.WriteIndex(ref("library/nginx:1.25"), list, opts...); err != nil {
		return err
	}
	img, err := random.Image(16<<10, 1)
	if err != nil {
		return err
	}
	if err := remote.Write(ref("busybox/busybox:1.36"), img, opts...); err != nil {
		return err
	}
	// Next month's busybox: the same layers and one more.
	top, err := random.Layer(8<<10, types.DockerLayer)
	if err != nil {
		return err
	}
	next, err := mutate.AppendLayers(img, top)
	if err != nil {
		return err
	}
	return remote.Write(ref("busybox/busybox:1.37"), next, opts...)
}

func releaseYAML(host string) string {
	return fmt.Sprintf(`# A small release, as a vendor would ship it.
apiVersion: apps/v1
kind: Deployment
metadata:
  name: controller
spec:
  template:
    spec:
      initContainers:
      - name: init
        image: %[1]s/busybox/busybox:1.36   # keep this comment
      containers:
      - name: controller
        image: "%[1]s/tekton-releases/pipeline/controller:v0.53.2"
        args: ["--proxy-image=%[1]s/library/nginx:1.25"]
---
apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  containers:
  - name: web
    image: %[1]s/library/nginx:1.25
`, host)
}
