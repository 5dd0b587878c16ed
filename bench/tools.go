package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
)

// step is one command of a timed job; a job of several steps (a loop over
// images) is timed from the first start to the last exit.
type step struct {
	argv   []string
	env    []string // added to the environment
	stdout string   // file for stdout; the log otherwise
}

// usage is what /usr/bin/time -v reported, summed over a job's steps.
type usage struct {
	Wall  float64 // seconds, measured by the harness around all steps
	CPU   float64 // user+system seconds
	RSS   int64   // largest peak resident set of any step, bytes
	FSOut int64   // bytes the steps wrote to the filesystem (ru_oublock*512)
}

// execSteps runs steps one after the other under /usr/bin/time -v. stderr
// and stdout go to logBase.N.log; a failure returns the tail of stderr.
func execSteps(ctx context.Context, steps []step, logBase string) (usage, error) {
	var u usage
	start := time.Now()
	for i, s := range steps {
		tf := fmt.Sprintf("%s.%d.time", logBase, i)
		lf := fmt.Sprintf("%s.%d.log", logBase, i)
		log, err := os.Create(lf)
		if err != nil {
			return u, err
		}
		cmd := exec.CommandContext(ctx, "/usr/bin/time", append([]string{"-v", "-o", tf}, s.argv...)...)
		cmd.Env = append(os.Environ(), s.env...)
		cmd.Stderr = log
		cmd.Stdout = log
		if s.stdout != "" {
			f, err := os.Create(s.stdout)
			if err != nil {
				log.Close()
				return u, err
			}
			defer f.Close()
			cmd.Stdout = f
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
		runErr := cmd.Run()
		log.Close()
		t, perr := parseTime(tf)
		if perr == nil {
			u.CPU += t.CPU
			u.RSS = max(u.RSS, t.RSS)
			u.FSOut += t.FSOut
		}
		if runErr != nil {
			u.Wall = time.Since(start).Seconds()
			return u, fmt.Errorf("%s: %v: %s", strings.Join(shortArgv(s.argv), " "), runErr, tail(lf, 3))
		}
	}
	u.Wall = time.Since(start).Seconds()
	return u, nil
}

// execStepsN runs steps par at a time (one after the other for par <= 1),
// as `xargs -P par` would: the wall time runs from the first start to the
// last exit; CPU is summed and RSS is the largest of any step. The first
// failure stops the steps not yet started.
func execStepsN(ctx context.Context, steps []step, logBase string, par int) (usage, error) {
	if par <= 1 {
		return execSteps(ctx, steps, logBase)
	}
	start := time.Now()
	var mu sync.Mutex
	var u usage
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(par)
	for i, s := range steps {
		g.Go(func() error {
			su, err := execSteps(gctx, []step{s}, fmt.Sprintf("%s.p%d", logBase, i))
			mu.Lock()
			defer mu.Unlock()
			u.CPU += su.CPU
			u.RSS = max(u.RSS, su.RSS)
			u.FSOut += su.FSOut
			return err
		})
	}
	err := g.Wait()
	u.Wall = time.Since(start).Seconds()
	return u, err
}

// syncTree fsyncs every file and directory under dir: what a tool that
// does not sync its output leaves for the kernel to write later.
func syncTree(dir string) error {
	return filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && !d.Type().IsRegular() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		return f.Sync()
	})
}

func shortArgv(a []string) []string {
	out := make([]string, 0, len(a))
	for i, s := range a {
		if i == 0 {
			s = filepath.Base(s)
		}
		out = append(out, s)
	}
	if len(out) > 4 {
		out = append(out[:4], "...")
	}
	return out
}

func tail(file string, n int) string {
	b, _ := os.ReadFile(file)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	s := strings.Join(lines, " | ")
	if len(s) > 400 {
		s = s[:400] + "..."
	}
	return s
}

func parseTime(file string) (usage, error) {
	f, err := os.Open(file)
	if err != nil {
		return usage{}, err
	}
	defer f.Close()
	var u usage
	found := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), ": ")
		if !ok {
			continue
		}
		switch k {
		case "User time (seconds)", "System time (seconds)":
			x, _ := strconv.ParseFloat(v, 64)
			u.CPU += x
			found = true
		case "Maximum resident set size (kbytes)":
			x, _ := strconv.ParseInt(v, 10, 64)
			u.RSS = x * 1024
		case "File system outputs":
			x, _ := strconv.ParseInt(v, 10, 64)
			u.FSOut = x * 512
		}
	}
	if !found {
		return u, errors.New("no usage in " + file)
	}
	return u, nil
}

// toolVersion runs argv and returns the first non-empty line it prints.
func toolVersion(argv ...string) string {
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return "unknown"
	}
	for _, l := range strings.Split(string(out), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			return l
		}
	}
	return "unknown"
}

// buildTools puts ferry (from this tree), crane (same go-containerregistry
// version as go.mod) and regctl (once; skipped if it does not build) into dir.
func buildTools(ctx context.Context, dir string, logf func(string, ...any)) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	abs, _ := filepath.Abs(dir)
	logf("building ferry from this tree")
	// Peers build in the same tree at the same time; a second attempt
	// rides out a transient failure of the shared build cache.
	for attempt := range 2 {
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", filepath.Join(abs, "ferry"), "./cmd/ferry")
		out, err := cmd.CombinedOutput()
		if err == nil {
			break
		}
		os.Remove(filepath.Join(abs, "ferry"))
		if attempt == 1 {
			logf("ferry did not build; its column will say so: %v\n%s", err, out)
		}
	}
	install := func(name, pkg string) {
		if _, err := os.Stat(filepath.Join(abs, name)); err == nil {
			return
		}
		if _, err := os.Stat(filepath.Join(abs, name+".failed")); err == nil {
			return // tried once already
		}
		logf("installing %s", pkg)
		cmd := exec.CommandContext(ctx, "go", "install", pkg)
		cmd.Env = append(os.Environ(), "GOBIN="+abs)
		if out, err := cmd.CombinedOutput(); err != nil {
			logf("%s did not install (skipped): %v", name, err)
			os.WriteFile(filepath.Join(abs, name+".failed"), out, 0o644)
		}
	}
	install("crane", "github.com/google/go-containerregistry/cmd/crane@"+ggcrVersion())
	install("regctl", "github.com/regclient/regclient/cmd/regctl@latest")
	return nil
}

// ggcrVersion reads the go-containerregistry version ferry builds with.
func ggcrVersion() string {
	b, err := os.ReadFile("go.mod")
	if err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			f := strings.Fields(l)
			if len(f) >= 2 && f[0] == "github.com/google/go-containerregistry" {
				return f[1]
			}
		}
	}
	return "v0.22.1"
}

// ferryHas reports whether the built ferry has subcommand c.
func ferryHas(bin, c string) bool {
	if _, err := os.Stat(bin); err != nil {
		return false
	}
	out, err := exec.Command(bin, c, "--help").CombinedOutput()
	return err == nil && strings.Contains(string(out), "Usage:") && strings.Contains(string(out), c)
}
