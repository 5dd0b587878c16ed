package testutil

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/pkg/internal/prereq"
)

// clusterReadyTimeout bounds the start of etcd and the API server up to
// /readyz answering ok: about 3 seconds on an idle machine.
const clusterReadyTimeout = 90 * time.Second

// KubectlTimeout bounds one run of kubectl.
const KubectlTimeout = 2 * time.Minute

// Cluster is a Kubernetes API server on 127.0.0.1 with its etcd: the
// control plane's front door only. No scheduler, controller or kubelet
// runs: a Deployment gets no ReplicaSet and a Pod never starts, but
// everything the API server decides itself (validation, defaulting,
// admission webhooks, Pod Security, server-side apply, dry runs) happens
// as in any cluster.
type Cluster struct {
	// Kubeconfig is a kubeconfig file for the cluster's administrator
	// (a client certificate in group system:masters).
	Kubeconfig string
	// Server is the API server's URL, https://127.0.0.1:PORT.
	Server string
	// CACert is the PEM file of the CA that signed the API server's
	// certificate and the administrator's.
	CACert string
	// Bin are the programs the cluster runs, and kubectl.
	Bin ClusterBinaries
	// StartTook is the wall time from starting etcd to /readyz ok.
	StartTook time.Duration

	dir             string
	etcd, apiserver *clusterProc
}

// StartCluster starts etcd and kube-apiserver on free loopback ports with
// temporary storage and stops both (their process groups) when the test
// ends. Without the binaries (`make test-cluster` builds them into
// ToolsDir) it skips t, or fails it under CI=true.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	bin, ok := clusterBinaries()
	if !ok {
		prereq.SkipRequired(t, fmt.Sprintf("kube-apiserver, kubectl and etcd are not built in %s: `make test-cluster` builds them (about 20 minutes on 2 cores the first time, then cached)", clusterDir()))
	}
	// Made before any process starts, so it is removed after they stop.
	dir := t.TempDir()
	c := &Cluster{Bin: bin, dir: dir}
	start := time.Now()
	pki := writeClusterPKI(t, dir)
	c.CACert = pki.ca

	etcdClient, etcdPeer, apiPort := FreePort(t), FreePort(t), FreePort(t)
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(etcdClient)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(etcdPeer)
	c.etcd = startClusterProc(t, bin.Etcd, filepath.Join(dir, "etcd.log"),
		"--name", "ferry-test",
		"--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "ferry-test="+peerURL,
		// The data is thrown away with the test: no need to wait for disks.
		"--unsafe-no-fsync",
		"--log-level", "warn",
	)
	c.Server = "https://127.0.0.1:" + strconv.Itoa(apiPort)
	c.apiserver = startClusterProc(t, bin.APIServer, filepath.Join(dir, "kube-apiserver.log"),
		"--etcd-servers", etcdURL,
		"--bind-address", "127.0.0.1",
		"--advertise-address", "127.0.0.1",
		"--secure-port", strconv.Itoa(apiPort),
		"--tls-cert-file", pki.serverCert, "--tls-private-key-file", pki.serverKey,
		"--client-ca-file", pki.ca,
		"--service-account-issuer", "https://kubernetes.default.svc",
		"--service-account-key-file", pki.saPub,
		"--service-account-signing-key-file", pki.saKey,
		"--service-cluster-ip-range", "10.0.0.0/24",
		// The default reconciler refuses a loopback address for the
		// kubernetes Service's endpoints.
		"--endpoint-reconciler-type", "none",
		"--authorization-mode", "RBAC",
		"--enable-admission-plugins", "NamespaceLifecycle,ServiceAccount,PodSecurity,MutatingAdmissionWebhook,ValidatingAdmissionWebhook",
		"--profiling=false",
	)
	t.Cleanup(func() {
		c.apiserver.stop()
		c.etcd.stop()
		if t.Failed() {
			t.Logf("kube-apiserver log (last lines):\n%s", tailFile(filepath.Join(dir, "kube-apiserver.log"), 40))
			t.Logf("etcd log (last lines):\n%s", tailFile(filepath.Join(dir, "etcd.log"), 20))
		}
	})

	c.Kubeconfig = filepath.Join(dir, "kubeconfig")
	writeTestFile(t, c.Kubeconfig, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: ferry-test
  cluster:
    server: %q
    certificate-authority: %q
users:
- name: admin
  user:
    client-certificate: %q
    client-key: %q
contexts:
- name: ferry-test
  context:
    cluster: ferry-test
    user: admin
current-context: ferry-test
`, c.Server, pki.ca, pki.adminCert, pki.adminKey)))

	if err := c.waitReady(t, pki); err != nil {
		t.Fatalf("starting the test cluster: %v\nkube-apiserver log (last lines):\n%s", err, tailFile(filepath.Join(dir, "kube-apiserver.log"), 40))
	}
	c.StartTook = time.Since(start)
	t.Logf("test cluster at %s ready in %v (kubeconfig %s)", c.Server, c.StartTook.Round(10*time.Millisecond), c.Kubeconfig)
	return c
}

// waitReady polls /readyz as the administrator until it answers ok.
func (c *Cluster) waitReady(t testing.TB, pki clusterPKI) error {
	pair, err := tls.LoadX509KeyPair(pki.adminCert, pki.adminKey)
	if err != nil {
		return err
	}
	pool, err := certPool(pki.ca)
	if err != nil {
		return err
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}},
	}}
	defer client.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(t.Context(), clusterReadyTimeout)
	defer cancel()
	var last error
	for {
		for _, p := range []*clusterProc{c.etcd, c.apiserver} {
			select {
			case <-p.done:
				return fmt.Errorf("%s exited: %v (log: %s)", filepath.Base(p.cmd.Path), p.err, lastLine(tailFile(p.log, 1)))
			default:
			}
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.Server+"/readyz", nil)
		resp, err := client.Do(req)
		if err == nil {
			body := new(bytes.Buffer)
			_, _ = body.ReadFrom(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(body.String()))
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("GET %s/readyz not ok within %v: %v", c.Server, clusterReadyTimeout, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// PIDs are the process IDs of etcd and kube-apiserver, each the leader
// of its process group.
func (c *Cluster) PIDs() []int {
	return []int{c.etcd.cmd.Process.Pid, c.apiserver.cmd.Process.Pid}
}

// Kubectl runs kubectl against the cluster with args, stdin as its input
// (none when nil). Its cache and home are the cluster's own, so a
// developer's ~/.kube (kuberc preferences included) plays no part. A run
// past KubectlTimeout fails the test.
func (c *Cluster) Kubectl(t testing.TB, stdin []byte, args ...string) Result {
	t.Helper()
	// Not t.Context(): that ends before cleanups run, which use kubectl too.
	return runBounded(t, "kubectl", args, KubectlTimeout, stdin, func(ctx context.Context) *exec.Cmd {
		all := append([]string{"--kubeconfig", c.Kubeconfig, "--cache-dir", filepath.Join(c.dir, "kubectl-cache")}, args...)
		cmd := exec.CommandContext(ctx, c.Bin.Kubectl, all...)
		cmd.Env = append(os.Environ(), "HOME="+c.dir, "KUBECONFIG="+c.Kubeconfig, "KUBERC=off")
		return cmd
	})
}

// MustKubectl is Kubectl that fails the test unless kubectl exits 0; it
// returns stdout.
func (c *Cluster) MustKubectl(t testing.TB, stdin []byte, args ...string) string {
	t.Helper()
	r := c.Kubectl(t, stdin, args...)
	if r.Code != 0 {
		t.Fatalf("kubectl %s: exit %d: %s", strings.Join(args, " "), r.Code, strings.TrimSpace(r.Stderr))
	}
	return r.Stdout
}

// CreateNamespace creates the namespace name with labels, and in it the
// ServiceAccount "default", which no controller creates here and without
// which the API server refuses every pod.
func (c *Cluster) CreateNamespace(t testing.TB, name string, labels map[string]string) {
	t.Helper()
	ns := map[string]any{
		"apiVersion": "v1", "kind": "Namespace",
		"metadata": map[string]any{"name": name, "labels": labels},
	}
	sa := map[string]any{
		"apiVersion": "v1", "kind": "ServiceAccount",
		"metadata": map[string]any{"name": "default", "namespace": name},
	}
	for _, obj := range []any{ns, sa} {
		b, err := json.Marshal(obj)
		if err != nil {
			t.Fatal(err)
		}
		c.MustKubectl(t, b, "create", "-f", "-")
	}
}

// clusterProc is etcd or kube-apiserver, in a process group of its own
// so that stopping it leaves nothing behind.
type clusterProc struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

func startClusterProc(t testing.TB, bin, logPath string, args ...string) *clusterProc {
	t.Helper()
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	setProcessGroup(cmd)
	if err := cmd.Start(); err != nil {
		logFile.Close()
		t.Fatalf("starting %s: %v", bin, err)
	}
	p := &clusterProc{cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	// Registered at once, so that a test failing before the cluster is
	// ready stops it too; stop is idempotent.
	t.Cleanup(p.stop)
	return p
}

// stop asks the process group to exit and kills it if it has not within
// a few seconds.
func (p *clusterProc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	signalGroup(p.cmd, false)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		signalGroup(p.cmd, true)
		<-p.done
	}
}

// clusterPKI are the files of the cluster's certificates and keys.
type clusterPKI struct {
	ca, serverCert, serverKey, adminCert, adminKey, saKey, saPub string
}

// writeClusterPKI writes a CA, the API server's certificate for
// 127.0.0.1, an administrator's client certificate (group system:masters,
// which RBAC lets do anything) and the service-account signing key pair.
func writeClusterPKI(t testing.TB, dir string) clusterPKI {
	t.Helper()
	p := clusterPKI{
		ca:         filepath.Join(dir, "ca.pem"),
		serverCert: filepath.Join(dir, "apiserver.pem"), serverKey: filepath.Join(dir, "apiserver.key"),
		adminCert: filepath.Join(dir, "admin.pem"), adminKey: filepath.Join(dir, "admin.key"),
		saKey: filepath.Join(dir, "sa.key"), saPub: filepath.Join(dir, "sa.pub"),
	}
	now := time.Now()
	caKey := newECKey(t)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ferry test cluster CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, p.ca, pemBlock("CERTIFICATE", caDER))
	leaf := func(serial int64, subject pkix.Name, usage x509.ExtKeyUsage, ips []net.IP, certPath, keyPath string) {
		key := newECKey(t)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: subject, IPAddresses: ips,
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		writeTestFile(t, certPath, pemBlock("CERTIFICATE", der))
		writeTestFile(t, keyPath, ecKeyPEM(t, key))
	}
	leaf(2, pkix.Name{CommonName: "kube-apiserver"}, x509.ExtKeyUsageServerAuth, []net.IP{net.IPv4(127, 0, 0, 1)}, p.serverCert, p.serverKey)
	leaf(3, pkix.Name{CommonName: "ferry-test-admin", Organization: []string{"system:masters"}}, x509.ExtKeyUsageClientAuth, nil, p.adminCert, p.adminKey)
	saKey := newECKey(t)
	pub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, p.saKey, ecKeyPEM(t, saKey))
	writeTestFile(t, p.saPub, pemBlock("PUBLIC KEY", pub))
	return p
}

func newECKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func ecKeyPEM(t testing.TB, k *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pemBlock("EC PRIVATE KEY", der)
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func certPool(caFile string) (*x509.CertPool, error) {
	b, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate", caFile)
	}
	return pool, nil
}

// tailFile is the last n lines of a file, for a failure's message.
func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
