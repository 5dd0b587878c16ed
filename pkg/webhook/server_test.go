package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/pkg/internal/testutil"
	admissionv1 "k8s.io/api/admission/v1"
)

func lockYAML(relocated string) string {
	return "apiVersion: ferry.dev/v1alpha1\nkind: ImagesLock\nimages:\n- image: nginx:1.25\n  relocated: " + relocated + "\n"
}

// writeFile replaces path the way kubelet does: a new file renamed into place.
func writeFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestWebhookServeReloadsAndShutsDown(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	lockFile, rulesFile := filepath.Join(dir, "lock.yaml"), filepath.Join(dir, "rules.yaml")
	first, err := GenerateTLS("ferry-webhook", "ferry-system", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, certFile, string(first.Cert))
	writeFile(t, keyFile, string(first.Key))
	writeFile(t, lockFile, lockYAML("registry.internal/one/nginx@"+digestA))
	writeFile(t, rulesFile, "apiVersion: ferry.dev/v1alpha1\nkind: ImageRules\nrules:\n- from: ghcr.io\n  to: registry.internal/ghcr\n")

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var logs testutil.SyncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, Options{
			CertFile: certFile, KeyFile: keyFile, LockFile: lockFile, RulesFile: rulesFile,
			Rules:        []Rule{{From: "quay.io", To: "registry.internal/quay"}},
			PollInterval: 20 * time.Millisecond, Listener: ln,
			Logger: newTestLogger(&logs),
		})
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})

	// clientFor trusts one CA and checks the Service's DNS name.
	clientFor := func(ca []byte) *http.Client {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(ca)
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "ferry-webhook.ferry-system.svc"},
		}}
	}
	client := clientFor(first.CACert)
	url := "https://" + ln.Addr().String()
	mutate := func(c *http.Client, image string) string {
		t.Helper()
		body := reviewFor("", "Pod", `{"spec":{"containers":[{"name":"a","image":"`+image+`"}]}}`)
		resp, err := c.Post(url+"/mutate", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out admissionv1.AdmissionReview
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatal(err)
		}
		var ops []patchOp
		json.Unmarshal(out.Response.Patch, &ops)
		if len(ops) == 0 {
			return image
		}
		return ops[0].Value
	}
	eventually := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 5s; logs:\n%s", what, logs.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	eventually("healthz", func() bool {
		resp, err := client.Get(url + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if got := mutate(client, "nginx:1.25"); got != "registry.internal/one/nginx@"+digestA {
		t.Errorf("lock: got %q", got)
	}
	if got := mutate(client, "ghcr.io/a/b:1"); got != "registry.internal/ghcr/a/b:1" {
		t.Errorf("rules file: got %q", got)
	}
	if got := mutate(client, "quay.io/a/b:1"); got != "registry.internal/quay/a/b:1" {
		t.Errorf("--map rule: got %q", got)
	}

	writeFile(t, lockFile, lockYAML("registry.internal/two/nginx@"+digestA))
	eventually("lock reload", func() bool { return mutate(client, "nginx:1.25") == "registry.internal/two/nginx@"+digestA })

	writeFile(t, lockFile, "apiVersion: ferry.dev/v1alpha1\nkind: ImagesLock\nimages:\n- image: nginx:1.25\n  relocated: not pinned\n")
	eventually("broken lock logged", func() bool { return strings.Contains(logs.String(), "refusing changed file") })
	if got := mutate(client, "nginx:1.25"); got != "registry.internal/two/nginx@"+digestA {
		t.Errorf("after a broken lock: got %q, want the last good mapping", got)
	}

	// Rules that contradict --map are refused as a whole, keeping the old ones.
	writeFile(t, rulesFile, "apiVersion: ferry.dev/v1alpha1\nkind: ImageRules\nrules:\n- from: quay.io\n  to: elsewhere.io/x\n")
	eventually("conflicting rules logged", func() bool { return strings.Contains(logs.String(), "already mapped") })
	if got := mutate(client, "ghcr.io/a/b:1"); got != "registry.internal/ghcr/a/b:1" {
		t.Errorf("after conflicting rules: got %q", got)
	}

	second, err := GenerateTLS("ferry-webhook", "ferry-system", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, keyFile, string(second.Key))
	writeFile(t, certFile, string(second.Cert))
	eventually("certificate reload", func() bool {
		c := clientFor(second.CACert)
		resp, err := c.Get(url + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return true
	})

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve returned %v after cancel, want nil", err)
		}
		done <- nil
	case <-time.After(15 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
}

func TestWebhookServeRefusesBrokenFilesAtStart(t *testing.T) {
	dir := t.TempDir()
	tlsPair, _ := GenerateTLS("w", "n", time.Now())
	certFile, keyFile, lockFile := filepath.Join(dir, "c"), filepath.Join(dir, "k"), filepath.Join(dir, "lock.yaml")
	writeFile(t, certFile, string(tlsPair.Cert))
	writeFile(t, keyFile, string(tlsPair.CACert)) // not a key
	writeFile(t, lockFile, lockYAML("registry.internal/one/nginx@"+digestA))
	err := Serve(context.Background(), Options{CertFile: certFile, KeyFile: keyFile, LockFile: lockFile, Addr: "127.0.0.1:0"})
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("mismatched key: error = %v", err)
	}
	writeFile(t, lockFile, "kind: Nope\n")
	err = Serve(context.Background(), Options{CertFile: certFile, KeyFile: certFile, LockFile: lockFile, Addr: "127.0.0.1:0"})
	if err == nil || !strings.Contains(err.Error(), "not a lock file") {
		t.Errorf("broken lock: error = %v", err)
	}
}

var _ io.Writer = (*testutil.SyncBuffer)(nil)

func newTestLogger(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }
