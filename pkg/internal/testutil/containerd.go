package testutil

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/pkg/internal/prereq"
)

// containerdTimeout bounds containerd's start (its gRPC socket answering)
// and every ctr command: far above the second they take here.
const containerdTimeout = 30 * time.Second

// containerdDisabled are the plugins of containerd 1.6 a content-only
// daemon does without: the CRI and its network, the task runtimes and
// their monitors, tracing, /opt, the snapshotters that need kernel
// features. Left on: content, metadata (bolt, which wants one
// snapshotter: native), images, leases, namespaces, introspection.
var containerdDisabled = []string{
	"io.containerd.grpc.v1.cri",
	"io.containerd.internal.v1.opt",
	"io.containerd.internal.v1.restart",
	"io.containerd.internal.v1.tracing",
	"io.containerd.tracing.processor.v1.otlp",
	"io.containerd.runtime.v1.linux",
	"io.containerd.runtime.v2.task",
	"io.containerd.monitor.v1.cgroups",
	"io.containerd.service.v1.tasks-service",
	"io.containerd.grpc.v1.tasks",
	"io.containerd.grpc.v1.containers",
	"io.containerd.snapshotter.v1.aufs",
	"io.containerd.snapshotter.v1.btrfs",
	"io.containerd.snapshotter.v1.devmapper",
	"io.containerd.snapshotter.v1.zfs",
	"io.containerd.snapshotter.v1.overlayfs",
}

// Containerd is a containerd daemon of the test's own: temporary root and
// state, its gRPC socket in a temporary directory, no CRI and no network
// of its own. ctr talks to it at Address.
type Containerd struct {
	// Address is the path of its gRPC socket, for ctr --address.
	Address string
	// Root is its root directory (content store, metadata).
	Root string

	cmd    *exec.Cmd
	stderr *SyncBuffer
	done   chan struct{}
}

// StartContainerd starts containerd as the current user (root or not:
// what it keeps needs no privilege) with everything
// it writes under temporary directories, waits until ctr reaches it, and
// stops it (by its PID) when the test ends. Where containerd or ctr is
// not installed the test is skipped (a failure under CI=true).
func StartContainerd(t testing.TB) *Containerd {
	t.Helper()
	for _, bin := range []string{"containerd", "ctr"} {
		if _, err := exec.LookPath(bin); err != nil || noSystemTools() {
			prereq.SkipRequired(t, bin+" not installed: apt-get install -y containerd")
		}
	}
	// A unix socket path is limited to about 100 bytes: t.TempDir's
	// names, made of the test's name, can be longer.
	dir, err := os.MkdirTemp("", "ferry-ctrd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	c := &Containerd{
		Address: filepath.Join(dir, "containerd.sock"),
		Root:    filepath.Join(dir, "root"),
		stderr:  &SyncBuffer{},
		done:    make(chan struct{}),
	}
	var b strings.Builder
	fmt.Fprintf(&b, "version = 2\nroot = %s\nstate = %s\n", strconv.Quote(c.Root), strconv.Quote(filepath.Join(dir, "state")))
	b.WriteString("disabled_plugins = [\n")
	for _, p := range containerdDisabled {
		fmt.Fprintf(&b, "  %s,\n", strconv.Quote(p))
	}
	b.WriteString("]\n")
	// The sockets belong to the current user: containerd chowns them to
	// uid and gid, 0 by default, which only root may do.
	owner := fmt.Sprintf("  uid = %d\n  gid = %d\n", os.Getuid(), os.Getgid())
	fmt.Fprintf(&b, "\n[grpc]\n  address = %s\n%s", strconv.Quote(c.Address), owner)
	fmt.Fprintf(&b, "\n[ttrpc]\n  address = %s\n%s", strconv.Quote(filepath.Join(dir, "ttrpc.sock")), owner)
	// No debug or metrics listener.
	b.WriteString("\n[debug]\n  address = \"\"\n\n[metrics]\n  address = \"\"\n")
	conf := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(conf, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	c.cmd = exec.Command("containerd", "--config", conf)
	c.cmd.Stdout, c.cmd.Stderr = c.stderr, c.stderr
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("starting containerd: %v", err)
	}
	go func() {
		_ = c.cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(c.stop)

	deadline := time.Now().Add(containerdTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, _, err := c.ctr(ctx, "version")
		cancel()
		if err == nil {
			return c
		}
		select {
		case <-c.done:
			t.Fatalf("containerd exited before answering on %s; its log:\n%s", c.Address, c.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd did not answer on %s within %v (last: %v); its log:\n%s", c.Address, containerdTimeout, err, c.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Ctr runs ctr against this containerd with args (after --address) and
// returns what it printed; err is non-nil when it did not exit 0.
func (c *Containerd) Ctr(t testing.TB, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), containerdTimeout)
	defer cancel()
	stdout, stderr, err = c.ctr(ctx, args...)
	if ctx.Err() != nil {
		t.Fatalf("ctr %s: no exit within %v; stderr:\n%s", strings.Join(args, " "), containerdTimeout, stderr)
	}
	return stdout, stderr, err
}

func (c *Containerd) ctr(ctx context.Context, args ...string) (string, string, error) {
	cmd := exec.CommandContext(ctx, "ctr", append([]string{"--address", c.Address}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	return out.String(), errb.String(), err
}

// Log is what containerd wrote so far.
func (c *Containerd) Log() string { return c.stderr.String() }

// stop sends SIGTERM to containerd's PID and kills it if it has not
// exited within a few seconds.
func (c *Containerd) stop() {
	select {
	case <-c.done:
		return
	default:
	}
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		_ = c.cmd.Process.Kill()
	}
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}
