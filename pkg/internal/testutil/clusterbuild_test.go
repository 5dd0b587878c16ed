package testutil

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestClusterGoMod(t *testing.T) {
	// As kubernetes writes it: a block, then a line of its own.
	kgomod := `module k8s.io/kubernetes

go 1.25.0

require (
	k8s.io/api v0.0.0
	go.etcd.io/etcd/server/v3 v3.6.5
)

replace (
	k8s.io/apimachinery => ./staging/src/k8s.io/apimachinery
	k8s.io/api => ./staging/src/k8s.io/api
	github.com/example/fork => github.com/example/fork v1.2.3
)

replace k8s.io/kubectl => ./staging/src/k8s.io/kubectl
`
	got, err := clusterGoMod([]byte(kgomod))
	if err != nil {
		t.Fatal(err)
	}
	want := `module ferry.test/cluster

go ` + clusterGoVersion + `

require k8s.io/kubernetes ` + KubernetesVersion + `

replace (
	k8s.io/api => k8s.io/api ` + stagingVersion + `
	k8s.io/apimachinery => k8s.io/apimachinery ` + stagingVersion + `
	k8s.io/kubectl => k8s.io/kubectl ` + stagingVersion + `
)
`
	if string(got) != want {
		t.Errorf("go.mod:\n%s\nwant:\n%s", got, want)
	}
	if _, err := clusterGoMod([]byte("module k8s.io/kubernetes\n")); err == nil || !strings.Contains(err.Error(), "no longer fits") {
		t.Errorf("a go.mod without staging modules: err = %v, want one saying the recipe no longer fits", err)
	}
}

// TestBuildClusterReusesTheCache: with the three binaries in the cache,
// BuildCluster runs no go command at all (which would fail here: nothing
// can be downloaded).
func TestBuildClusterReusesTheCache(t *testing.T) {
	t.Setenv(ToolsDirEnv, t.TempDir())
	t.Setenv("GOPROXY", "off")
	want, _ := clusterBinaries()
	for _, p := range []string{want.APIServer, want.Kubectl, want.Etcd} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		writeTestFile(t, p, []byte("#!/bin/sh\n"))
	}
	got, err := BuildCluster()
	if err != nil || got != want {
		t.Errorf("got %+v, %v; want the cached %+v", got, err, want)
	}
}
