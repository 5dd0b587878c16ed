package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const registryBinary = "/usr/bin/docker-registry"

// cleanups run at exit and on SIGINT, last registered first, so no registry
// outlives the benchmark.
var (
	cleanupMu sync.Mutex
	cleanups  []func()
)

func atExit(f func()) {
	cleanupMu.Lock()
	defer cleanupMu.Unlock()
	cleanups = append(cleanups, f)
}

func runCleanups() {
	cleanupMu.Lock()
	fs := cleanups
	cleanups = nil
	cleanupMu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}

// registry is a docker-registry process on 127.0.0.1 with its storage.
type registry struct {
	Host    string
	Storage string
	cmd     *exec.Cmd
	done    chan struct{}
	out     *bytes.Buffer
	stopped sync.Once
}

// startRegistry serves storage (created if missing) on a free loopback port.
func startRegistry(ctx context.Context, storage, confDir string) (*registry, error) {
	if _, err := os.Stat(registryBinary); err != nil {
		return nil, fmt.Errorf("docker-registry not found: apt-get install -y docker-registry")
	}
	if err := os.MkdirAll(storage, 0o755); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(confDir, 0o755); err != nil {
		return nil, err
	}
	var lastErr error
	for range 3 {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		host := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		conf := filepath.Join(confDir, "registry-"+strconv.Itoa(port)+".yml")
		if err := os.WriteFile(conf, []byte(registryConfig(host, storage)), 0o600); err != nil {
			return nil, err
		}
		r := &registry{Host: host, Storage: storage, done: make(chan struct{}), out: &bytes.Buffer{}}
		r.cmd = exec.Command(registryBinary, "serve", conf)
		r.cmd.Env = cleanEnv()
		r.cmd.Stdout, r.cmd.Stderr = r.out, r.out
		r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := r.cmd.Start(); err != nil {
			return nil, err
		}
		go func() { r.cmd.Wait(); close(r.done) }()
		atExit(r.stop)
		if err := r.waitReady(ctx); err == nil {
			return r, nil
		} else {
			lastErr = err
		}
		r.stop()
	}
	return nil, lastErr
}

func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "REGISTRY_") {
			env = append(env, kv)
		}
	}
	return env
}

func registryConfig(host, storage string) string {
	return fmt.Sprintf(`version: 0.1
log:
  level: error
  formatter: text
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %s
  secret: ferry-bench-secret
`, strconv.Quote(storage), host)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (r *registry) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	c := &http.Client{Timeout: time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.Host+"/v2/", nil)
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-r.done:
			return fmt.Errorf("docker-registry exited: %s", r.out.String())
		case <-ctx.Done():
			return fmt.Errorf("docker-registry on %s not ready: %v", r.Host, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// stop ends the registry (its process group), waiting a few seconds at most.
func (r *registry) stop() {
	r.stopped.Do(func() {
		select {
		case <-r.done:
			return
		default:
		}
		if err := syscall.Kill(-r.cmd.Process.Pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
			_ = r.cmd.Process.Kill()
		}
		select {
		case <-r.done:
		case <-time.After(3 * time.Second):
			_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
			<-r.done
		}
	})
}

// dirSize is the sum of the sizes of the regular files under dir.
func dirSize(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// cpuSeconds is the user+system CPU a process has used so far, from
// /proc/PID/stat (clock ticks of 1/100 s, as on every Linux this runs on);
// 0 when it cannot be read.
func (r *registry) cpuSeconds() float64 {
	if r == nil || r.cmd == nil || r.cmd.Process == nil {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", r.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces: count from its ")".
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64) // field 14
	st, _ := strconv.ParseFloat(f[12], 64) // field 15
	return (ut + st) / 100
}
