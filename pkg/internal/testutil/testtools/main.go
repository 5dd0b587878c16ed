// Command testtools builds what the end-to-end tests need and Go can build
// (distribution's registry, cosign and oras, at the versions testutil pins) into the test
// tool cache, once per machine, and prints its path. `make test` runs it
// first, so that the one slow build happens in sight and outside any
// test's time limit; the tests build it themselves when it is missing.
//
// With -cluster it builds only kube-apiserver, kubectl and etcd for the
// cluster tests (`make test-cluster`): about 20 minutes on 2 cores the
// first time, which `make test` must not pay. The cluster tests never
// build them: they skip (fail under CI=true) when they are missing.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/ferry-dev/ferry/pkg/internal/testutil"
)

type tool struct {
	name  string
	build func() (string, error)
}

func main() {
	cluster := flag.Bool("cluster", false, "build only kube-apiserver, kubectl and etcd for the cluster tests (~20 minutes the first time)")
	flag.Parse()
	tools := []tool{
		{"test registry", testutil.BuildRegistry},
		{"cosign", testutil.BuildCosign},
		{"oras", testutil.BuildOras},
	}
	if *cluster {
		tools = []tool{{"kube-apiserver, kubectl, etcd", func() (string, error) {
			b, err := testutil.BuildCluster()
			return fmt.Sprintf("%s %s %s", b.APIServer, b.Kubectl, b.Etcd), err
		}}}
	}
	for _, tool := range tools {
		path, err := tool.build()
		if err != nil {
			fmt.Fprintln(os.Stderr, "error:", err)
			os.Exit(1)
		}
		fmt.Printf("%s: %s\n", tool.name, path)
	}
}
