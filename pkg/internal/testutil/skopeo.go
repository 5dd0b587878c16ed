package testutil

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os/exec"
	"strconv"
	"sync"
	"testing"

	"github.com/ferry-dev/ferry/pkg/internal/prereq"
)

// The judges of byte identity share no code with ferry or
// go-containerregistry: a plain HTTP GET of the raw manifest (judge.go),
// always, and skopeo as a second judge where it is installed.

// ServedDigest returns "sha256:<hex>" of the manifest bytes the registry
// serves for ref (REGISTRY/repo:tag or REGISTRY/repo@digest). insecure
// turns off TLS verification and lets plain HTTP be used, which loopback
// test registries need.
func ServedDigest(t testing.TB, ref string, insecure bool) string {
	t.Helper()
	sum := sha256.Sum256(ServedManifest(t, ref, insecure))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// ServedManifest returns the manifest bytes the registry serves for ref,
// fetched by a plain HTTP GET and, where skopeo is installed, by skopeo,
// failing t if the two differ. Without skopeo the gap is recorded in the
// package's summary line (a failure under CI=true).
func ServedManifest(t testing.TB, ref string, insecure bool) []byte {
	t.Helper()
	checkSkopeo(t)
	b, err := JudgeManifest(t.Context(), ref, insecure)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// JudgeManifest is ServedManifest for goroutines: it returns errors instead
// of failing a test. Call CheckSkopeo once in the test first, so that a
// missing skopeo is recorded.
func JudgeManifest(ctx context.Context, ref string, insecure bool) ([]byte, error) {
	b, err := FetchManifest(ctx, ref, insecure)
	if err != nil {
		return nil, err
	}
	bin, ok := skopeoPath()
	if !ok {
		return b, nil
	}
	sb, err := skopeoInspect(ctx, bin, ref, insecure)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(b, sb) {
		return nil, fmt.Errorf("%s: skopeo reads other manifest bytes (%d) than a plain GET (%d)", ref, len(sb), len(b))
	}
	return b, nil
}

// CheckSkopeo records, once per test, that manifests are judged by the
// HTTP GET alone because skopeo is not installed (or ignored).
func CheckSkopeo(t testing.TB) {
	t.Helper()
	checkSkopeo(t)
}

// skopeoNoted holds the tests already recorded as judged without skopeo.
var skopeoNoted sync.Map

func checkSkopeo(t testing.TB) {
	t.Helper()
	if _, ok := skopeoPath(); ok {
		return
	}
	if _, seen := skopeoNoted.LoadOrStore(t.Name(), true); seen {
		return
	}
	prereq.WithoutRequired(t, skopeoMissingWhy()+" (manifests judged by a plain HTTP GET only)")
}

// Skopeo returns the path of skopeo for checks only skopeo can make
// (reading an oci-archive), or skips t where it is not installed: the skip
// is recorded, and fails the test under CI=true.
func Skopeo(t testing.TB) string {
	t.Helper()
	bin, ok := skopeoPath()
	if !ok {
		prereq.SkipRequired(t, skopeoMissingWhy())
	}
	return bin
}

// OptionalSkopeo returns the path of skopeo for an extra check a test can
// do without; where skopeo is missing it records that the check did not
// run (a failure under CI=true) and returns false.
func OptionalSkopeo(t testing.TB) (string, bool) {
	t.Helper()
	bin, ok := skopeoPath()
	if !ok {
		prereq.WithoutRequired(t, skopeoMissingWhy())
	}
	return bin, ok
}

// SkopeoDigest is ServedDigest, under the name the end-to-end tests have
// always used.
func SkopeoDigest(t testing.TB, ref string, insecure bool) string {
	t.Helper()
	return ServedDigest(t, ref, insecure)
}

// SkopeoRaw is ServedManifest without TLS verification, under its old name.
func SkopeoRaw(t testing.TB, ref string) []byte {
	t.Helper()
	return ServedManifest(t, ref, true)
}

// skopeoPath finds skopeo, unless installed tools are to be ignored.
func skopeoPath() (string, bool) {
	if noSystemTools() {
		return "", false
	}
	bin, err := exec.LookPath("skopeo")
	return bin, err == nil
}

func skopeoMissingWhy() string {
	if noSystemTools() {
		return "skopeo ignored (" + NoSystemToolsEnv + " is set)"
	}
	return "skopeo not installed: apt-get install -y skopeo"
}

func skopeoInspect(ctx context.Context, bin, ref string, insecure bool) ([]byte, error) {
	cmd := exec.CommandContext(ctx, bin, "inspect", "--raw",
		"--tls-verify="+strconv.FormatBool(!insecure), "docker://"+ref)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("skopeo inspect --raw docker://%s: %v: %s", ref, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return stdout.Bytes(), nil
}
