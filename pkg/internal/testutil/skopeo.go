package testutil

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os/exec"
	"strconv"
	"testing"
)

// SkopeoDigest returns "sha256:<hex>" of the manifest bytes the registry
// serves for ref, as skopeo fetches them. skopeo shares no code with ferry
// or go-containerregistry, which makes it a fair judge of byte identity.
// insecure turns off TLS verification, which plain-HTTP registries need.
func SkopeoDigest(t testing.TB, ref string, insecure bool) string {
	t.Helper()
	sum := sha256.Sum256(skopeoRaw(t, ref, insecure))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// SkopeoRaw returns the manifest bytes the registry serves for ref, fetched
// by skopeo without TLS verification.
func SkopeoRaw(t testing.TB, ref string) []byte {
	t.Helper()
	return skopeoRaw(t, ref, true)
}

func skopeoRaw(t testing.TB, ref string, insecure bool) []byte {
	t.Helper()
	bin, err := exec.LookPath("skopeo")
	if err != nil {
		t.Fatalf("skopeo not found: apt-get install -y skopeo")
	}
	cmd := exec.CommandContext(t.Context(), bin, "inspect", "--raw",
		"--tls-verify="+strconv.FormatBool(!insecure), "docker://"+ref)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("skopeo inspect --raw docker://%s: %v: %s", ref, err, stderr.Bytes())
	}
	return stdout.Bytes()
}
