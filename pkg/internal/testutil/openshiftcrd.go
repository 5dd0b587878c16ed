package testutil

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// The OpenShift API module whose CRDs judge `ferry mirror-config --format
// idms`: the one place its version is pinned. openshift/api tags no
// releases, so this is a pseudo-version from its release-4.20 era.
const (
	openShiftAPIModule  = "github.com/openshift/api"
	OpenShiftAPIVersion = "v0.0.0-20251021124544-a2cb0c5d994d"
)

// OpenShiftMirrorSetCRDs returns the paths of the ImageDigestMirrorSet and
// ImageTagMirrorSet CustomResourceDefinitions of github.com/openshift/api
// at OpenShiftAPIVersion, which `go mod download` brings into the module
// cache from the Go module proxy on first use.
func OpenShiftMirrorSetCRDs(ctx context.Context) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	what := "go mod download " + openShiftAPIModule + "@" + OpenShiftAPIVersion
	tmp, err := os.MkdirTemp("", "ferry-openshift-api-")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer os.RemoveAll(tmp)
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", openShiftAPIModule+"@"+OpenShiftAPIVersion)
	cmd.Dir = tmp // outside any module
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
	out, err := cmd.Output()
	var mod struct{ Dir, Error string }
	if jerr := json.Unmarshal(out, &mod); jerr != nil || mod.Error != "" || err != nil || mod.Dir == "" {
		return nil, fmt.Errorf("%s failed (%v%s): the first run needs the Go module proxy", what, err, mod.Error)
	}
	dir := filepath.Join(mod.Dir, "config", "v1", "zz_generated.crd-manifests")
	var paths []string
	for _, name := range []string{"imagedigestmirrorsets", "imagetagmirrorsets"} {
		p := filepath.Join(dir, "0000_10_config-operator_01_"+name+".crd.yaml")
		if !isFile(p) {
			return nil, fmt.Errorf("%s: %s not found in the module: has the CRD moved?", what, p)
		}
		paths = append(paths, p)
	}
	return paths, nil
}
