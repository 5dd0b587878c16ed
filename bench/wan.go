package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The WAN job (issue 13): many small images across a slow link, where the
// count of round trips decides and bytes hardly matter. Each registry sits
// behind a proxy that holds every request -wan-delay and, with -wan-auth,
// asks for tokens as Docker Hub does. It runs with the other jobs, or alone
// in a few minutes:
//
//	go run ./bench -only-wan -wan-images 40 -wan-tools ferry,crane
const (
	wanBegin = "<!-- bench:wan -->"
	wanEnd   = "<!-- /bench:wan -->"
)

// planWAN plans n single-repository images of a few small layers on shared
// bases; every 5th is a 2-platform index, every 3rd Docker schema 2.
func planWAN(seed uint64, n int) []repoSpec {
	rng := rand.New(rand.NewChaCha8(seedBytes(seed, "wan")))
	bases := []struct {
		kind string
		size int64
	}{{"os", 384 << 10}, {"slim", 96 << 10}, {"runtime", 640 << 10}, {"static", 32 << 10}}
	var out []repoSpec
	for i := range n {
		name := fmt.Sprintf("app%03d", i)
		r := repoSpec{name: "src/wan/" + name, docker: i%3 == 2, index: i%5 == 4}
		plats := []string{"amd64"}
		if r.index {
			plats = []string{"amd64", "arm64"}
		}
		b := bases[i%len(bases)]
		for _, a := range plats {
			ls := []layerSpec{{id: "wan-base-" + b.kind + "-" + a, size: b.size}}
			if i%2 == 0 {
				ls = append(ls, layerSpec{id: "wan-base-certs-" + a, size: 16 << 10})
			}
			for k := range 2 {
				ls = append(ls, layerSpec{id: fmt.Sprintf("wan-%s-%s-%d", name, a, k), size: int64(4<<10 + rng.IntN(60<<10))})
			}
			r.platforms = append(r.platforms, platformSpec{arch: a, layers: ls})
		}
		out = append(out, r)
	}
	return out
}

// wanEntry is one contestant of the WAN job: a tool on a job.
type wanEntry struct {
	name string
	t    *tool
	job  string
}

type wanResult struct {
	Started  time.Time
	Elapsed  time.Duration
	Args     []string
	Load     []string
	Set      *imageSet
	Delay    time.Duration
	Auth     bool
	Runs     int // rounds finished
	Planned  int
	Par      int
	Order    []string          // entry names, in the order of the table
	Jobs     map[string]string // entry name -> job
	Versions map[string]string
	Cells    map[string]*cell
}

// wanEntries picks the contestants named in -wan-tools.
func wanEntries(c config, toolsDir string) ([]wanEntry, error) {
	var es []wanEntry
	for _, n := range c.wanTools {
		n = strings.TrimSpace(n)
		// ferry-cN: ferry with --concurrency N, to show what the default
		// leaves on the table across a slow link.
		if v, ok := strings.CutPrefix(n, "ferry-c"); ok {
			if k, err := strconv.Atoi(v); err == nil && k > 0 {
				f := ferryTool(filepath.Join(toolsDir, "ferry"), n, "--concurrency", v)
				es = append(es, wanEntry{"ferry relocate --concurrency " + v, f, jobRelocate}, wanEntry{"ferry pkg --concurrency " + v, f, jobPkg})
				continue
			}
		}
		switch n {
		case "ferry":
			f := ferryTool(filepath.Join(toolsDir, "ferry"), "ferry")
			es = append(es, wanEntry{"ferry relocate", f, jobRelocate}, wanEntry{"ferry pkg", f, jobPkg})
		case "crane":
			cr := craneTool(filepath.Join(toolsDir, "crane"))
			par := *cr
			par.par = c.wanPar
			es = append(es, wanEntry{fmt.Sprintf("crane copy ×%d", c.wanPar), &par, jobRelocate}, wanEntry{"crane pull", cr, jobPkg})
		case "regctl":
			es = append(es, wanEntry{"regctl image copy", regctlTool(filepath.Join(toolsDir, "regctl")), jobRelocate})
		case "skopeo":
			es = append(es, wanEntry{"skopeo copy", skopeoTool(), jobRelocate})
		default:
			return nil, fmt.Errorf("-wan-tools: unknown tool %q (ferry, ferry-cN for --concurrency N, crane, regctl, skopeo)", n)
		}
	}
	return es, nil
}

// benchWAN generates (or reuses) the WAN set and runs every entry c.wanRuns
// times, alternating their order, through delaying proxies.
// after, when set, gets the result so far after each round (-only-wan writes
// the report then, so that an interrupted run leaves its finished rounds).
func benchWAN(ctx context.Context, c config, after func(*wanResult)) (*wanResult, error) {
	toolsDir, _ := filepath.Abs(filepath.Join(c.workDir, "tools"))
	entries, err := wanEntries(c, toolsDir)
	if err != nil {
		return nil, err
	}
	res := &wanResult{Started: time.Now(), Args: os.Args[1:], Delay: c.wanDelay, Auth: c.wanAuth, Planned: c.wanRuns, Par: c.wanPar,
		Jobs: map[string]string{}, Versions: map[string]string{}, Cells: map[string]*cell{}, Load: []string{loadAvg()}}
	for _, e := range entries {
		res.Order = append(res.Order, e.name)
		res.Jobs[e.name] = e.job
		res.Versions[e.name] = e.t.version
	}
	setDir := filepath.Join(c.workDir, "cache", fmt.Sprintf("wan-%s-seed%d-n%d", planVersion, c.seed, c.wanImages))
	storage := filepath.Join(setDir, "storage")
	set, err := loadSet(setDir)
	var src *registry
	if err != nil {
		logf("wan: generating %d images into %s", c.wanImages, setDir)
		if err := resetDir(setDir); err != nil {
			return nil, err
		}
		if src, err = startRegistry(ctx, storage, filepath.Join(setDir, "conf")); err != nil {
			return nil, err
		}
		set = &imageSet{Seed: c.seed}
		if err := pushPlan(ctx, src.Host, c.seed, planWAN(c.seed, c.wanImages), set, 1, 50, logf); err != nil {
			return nil, err
		}
		if err := saveSet(setDir, set); err != nil {
			return nil, err
		}
	} else if src, err = startRegistry(ctx, storage, filepath.Join(setDir, "conf")); err != nil {
		return nil, err
	}
	defer src.stop()
	res.Set = set
	logf("wan: %d images, %d unique blobs, %.1f MiB unique; %s per request, tokens %v", len(set.Images), set.UniqueBlobs, float64(set.UniqueBytes)/mib, c.wanDelay, c.wanAuth)

	work := filepath.Join(c.workDir, "work", "wan")
	if err := resetDir(work); err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	srcProxy, err := startProxyOpts(src.Host, proxyOptions{Delay: c.wanDelay, Auth: c.wanAuth})
	if err != nil {
		return nil, err
	}
	defer srcProxy.close()
	lockFile, err := wanLock(ctx, set, src.Host, srcProxy.Host, work, filepath.Join(toolsDir, "ferry"))
	if err != nil {
		return nil, err
	}
	for r := range c.wanRuns {
		k := r % len(entries)
		for _, en := range append(slices.Clone(entries[k:]), entries[:k]...) {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			cl := res.Cells[en.name]
			if cl == nil {
				cl = &cell{Tool: en.name, Job: en.job}
				res.Cells[en.name] = cl
			}
			if ok, why := en.t.can(en.job); !ok {
				cl.Unavailable = why
				continue
			}
			e := &env{set: set, src: srcProxy.Host, srcReg: src, lock: lockFile, tools: toolsDir,
				art: filepath.Join(work, "art", safeName(en.name)), run: filepath.Join(work, "runs", fmt.Sprintf("%d-%s", r, safeName(en.name)))}
			if err := resetDir(e.run); err != nil {
				return nil, err
			}
			s, _ := runJob(ctx, en.t, en.job, e, srcProxy, false)
			cl.Runs = append(cl.Runs, s)
			msg := fmt.Sprintf("wan run %d/%d %-18s %6.2fs cpu %5.2fs requests %d+%d digests %s", r+1, c.wanRuns, en.name, s.Wall, s.CPU, total(s.SrcKinds), total(s.TgtKinds), s.Check)
			if s.Err != "" {
				msg += "; error: " + s.Err
			}
			logf("%s", msg)
			os.RemoveAll(e.art)
			os.RemoveAll(e.run)
		}
		res.Load = append(res.Load, loadAvg())
		res.Runs, res.Elapsed = r+1, time.Since(res.Started)
		if after != nil {
			after(res)
		}
	}
	return res, nil
}

// wanLock writes ferry's lock of the set naming the source's proxy: from
// `ferry resolve` against the registry itself (not timed, not delayed), or
// from the harness when that fails.
func wanLock(ctx context.Context, set *imageSet, srcHost, proxyHost, work, ferryBin string) (string, error) {
	release := filepath.Join(work, "release.yaml")
	direct := filepath.Join(work, "images.direct.lock.yaml")
	lockFile := filepath.Join(work, "images.lock.yaml")
	if err := os.WriteFile(release, set.releaseYAML(srcHost), 0o644); err != nil {
		return "", err
	}
	var lock []byte
	if ferryHas(ferryBin, "resolve") {
		cmd := exec.CommandContext(ctx, ferryBin, "resolve", "-f", release, "--lock-output", direct, "--insecure-registry", srcHost, "-q")
		if out, err := cmd.CombinedOutput(); err != nil {
			logf("wan: ferry resolve failed, the harness writes the lock: %v: %s", err, strings.TrimSpace(string(out)))
		} else {
			lock, _ = os.ReadFile(direct)
		}
	}
	if lock == nil {
		lock = set.lockYAML(srcHost)
	}
	return lockFile, os.WriteFile(lockFile, []byte(strings.ReplaceAll(string(lock), srcHost, proxyHost)), 0o644)
}

// total counts the requests of m (kindRefused counts some of them again).
func total(m map[string]int) int {
	n := 0
	for _, k := range requestKinds {
		n += m[k]
	}
	return n
}

// medianKinds is the median count of each kind over the runs that
// succeeded.
func medianKinds(runs []sample, target bool) map[string]float64 {
	out := map[string]float64{}
	for _, k := range append(slices.Clone(requestKinds), kindRefused) {
		var xs []float64
		for _, s := range runs {
			if s.Err != "" {
				continue
			}
			m := s.SrcKinds
			if target {
				m = s.TgtKinds
			}
			xs = append(xs, float64(m[k]))
		}
		out[k] = median(xs)
	}
	return out
}

// fastest returns the peer (not ferry) with the lowest median wall on job
// among those that kept every digest.
func (w *wanResult) fastest(job string) (string, float64) {
	best, bw := "", 0.0
	for _, n := range w.Order {
		c := w.Cells[n]
		if isFerry(n) || w.Jobs[n] != job || c == nil || c.Unavailable != "" {
			continue
		}
		st := summarize(c)
		if st.n == 0 || !st.check.ok() {
			continue
		}
		if best == "" || st.wall < bw {
			best, bw = n, st.wall
		}
	}
	return best, bw
}

// section renders the report's section of the WAN job, between its markers.
func (w *wanResult) section() string {
	var b strings.Builder
	p := func(f string, a ...any) { fmt.Fprintf(&b, f, a...) }
	set := w.Set
	n := float64(len(set.Images))
	nIdx := 0
	for _, im := range set.Images {
		if im.IsIndex {
			nIdx++
		}
	}
	p("%s\n## Many images across a slow link (make bench)\n\n", wanBegin)
	p("Measured on %s (`go run ./bench %s`, %s; 1-minute load average before and after each round: %s). ",
		w.Started.Format("2006-01-02 15:04 MST"), strings.Join(w.Args, " "), w.Elapsed.Round(time.Second), strings.Join(w.Load, ", "))
	p("%d images in %d repositories (%d of them 2-platform indexes, every third Docker schema 2), %d unique blobs, %.1f MiB unique: a few small layers each on 4 shared bases. ",
		len(set.Images), len(set.Images), nIdx, set.UniqueBlobs, float64(set.UniqueBytes)/mib)
	p("The source, and for a copy a new empty target each run, sit behind a proxy on loopback that holds every request %s before it is answered (and the first request of a new connection as long again)", w.Delay)
	if w.Auth {
		p(" and asks for a token as Docker Hub does (401 with a Bearer challenge per repository and action; anonymous tokens from its `/token`)")
	}
	p(". %d run(s)", w.Runs)
	if w.Runs < w.Planned {
		p(" of %d planned (the rest did not finish)", w.Planned)
	}
	p(", tools alternating run by run; medians. ")
	p("`crane copy ×%d` runs one `crane copy` per image, %d at a time (as `xargs -P%d`); regctl and skopeo run one command per image in a loop. ", w.Par, w.Par, w.Par)
	p("A `pkg`/`pull` is timed to a durable artifact (each file fsynced after the tool exits); the plain wall time is beside it.\n\n")

	p("| tool | job | wall s | plain wall s | fastest peer ÷ this | CPU s | requests per image | every digest survived |\n| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |\n")
	for _, name := range w.Order {
		c := w.Cells[name]
		job := w.Jobs[name]
		if c == nil {
			continue
		}
		if c.Unavailable != "" {
			p("| %s | %s | %s | | | | | |\n", name, job, c.Unavailable)
			continue
		}
		st := summarize(c)
		if st.n == 0 {
			p("| %s | %s | failed %d/%d: %s | | | | | %s |\n", name, job, st.failed, len(c.Runs), esc(st.firstErr), st.check)
			continue
		}
		label := name
		if st.failed > 0 {
			label += fmt.Sprintf(" (%d of %d runs failed)", st.failed, len(c.Runs))
		}
		plain := ""
		if job == jobPkg {
			var xs []float64
			for _, s := range c.Runs {
				if s.Err == "" {
					xs = append(xs, s.Plain)
				}
			}
			plain = fmt.Sprintf("%.2f", median(xs))
		}
		ratio := ""
		if pn, pw := w.fastest(job); pn != "" {
			ratio = fmt.Sprintf("%.2f×", pw/st.wall)
		}
		src, tgt := medianKinds(c.Runs, false), medianKinds(c.Runs, true)
		var req float64
		for _, k := range requestKinds {
			req += src[k] + tgt[k]
		}
		p("| %s | %s | %.2f | %s | %s | %.2f | %.1f | %s |\n", label, jobName(job), st.wall, plain, ratio, st.cpu, req/n, st.check)
	}
	p("\n*Fastest peer ÷ this*: the fastest peer's median on the same job (a copy: registry to registry; a pull: registry to disk) over this row's; above 1, this row is faster.\n\n")
	for _, t := range []struct {
		job  string
		goal float64
	}{{jobRelocate, 3}, {jobPkg, 4}} {
		name := "ferry relocate"
		if t.job == jobPkg {
			name = "ferry pkg"
		}
		c := w.Cells[name]
		pn, pw := w.fastest(t.job)
		if c == nil || c.Unavailable != "" || pn == "" {
			continue
		}
		st := summarize(c)
		if st.n == 0 {
			continue
		}
		x := pw / st.wall
		p("- %s %s %.2f× the fastest peer, %s (%.2f s against %.2f s); the goal of issue 13 is %g×.\n", mark(x >= t.goal), name, x, pn, st.wall, pw, t.goal)
	}
	p("\nRequests each registry saw, per image (%d images; a 2-platform index counts as one image), medians over the runs; *total* counts them all, those refused with 401 for want of a token included.\n\n", len(set.Images))
	p("| tool | registry |")
	for _, k := range requestKinds {
		p(" %s |", k)
	}
	p(" per image | total | of them refused (401) |\n| --- | --- |%s ---: | ---: | ---: |\n", strings.Repeat(" ---: |", len(requestKinds)))
	for _, name := range w.Order {
		c := w.Cells[name]
		if c == nil || c.Unavailable != "" || summarize(c).n == 0 {
			continue
		}
		regs := []bool{false}
		if w.Jobs[name] == jobRelocate {
			regs = append(regs, true)
		}
		for _, target := range regs {
			m := medianKinds(c.Runs, target)
			reg := "source"
			if target {
				reg = "target"
			}
			p("| %s | %s |", name, reg)
			var sum float64
			for _, k := range requestKinds {
				p(" %.2f |", m[k]/n)
				sum += m[k]
			}
			p(" %.2f | %.0f | %.0f |\n", sum/n, sum, m[kindRefused])
		}
	}
	p("\nA new connection costs one more round trip (its first request waits twice the delay), as the TCP handshake does; TLS, which costs one or two more on a real link, is not modelled, which favours a tool that opens many connections.\n")
	p("Reproduce alone: `go run ./bench -only-wan` (defaults: -wan-images 200, -wan-delay 25ms, -wan-runs 3, -wan-tools ferry,crane,regctl,skopeo, -wan-auth); it replaces only this section.\n\n%s\n", wanEnd)
	return b.String()
}

func jobName(job string) string {
	if job == jobPkg {
		return "pull to disk"
	}
	return "copy"
}

// spliceSection replaces the part of doc from begin to end with sec, or
// appends sec when doc has no such part.
func spliceSection(doc, sec, begin, end string) string {
	i, j := strings.Index(doc, begin), strings.Index(doc, end)
	if i < 0 || j < i {
		return strings.TrimRight(doc, "\n") + "\n\n" + sec
	}
	return doc[:i] + strings.TrimRight(sec, "\n") + doc[j+len(end):]
}

// keepSection carries the part of old from begin to end into doc when doc
// lacks it (a full run that skipped the job keeps its last figures).
func keepSection(doc, old, begin, end string) string {
	i, j := strings.Index(old, begin), strings.Index(old, end)
	if i < 0 || j < i || strings.Contains(doc, begin) {
		return doc
	}
	return strings.TrimRight(doc, "\n") + "\n\n" + old[i:j+len(end)] + "\n"
}

// runWANOnly runs the WAN job alone and replaces its section of c.out.
func runWANOnly(ctx context.Context, c config) error {
	if _, err := os.Stat("/usr/bin/time"); err != nil {
		return fmt.Errorf("/usr/bin/time not found: apt-get install -y time")
	}
	if _, err := os.Stat("go.mod"); err != nil {
		return fmt.Errorf("run from the repository root (make bench)")
	}
	if err := buildTools(ctx, filepath.Join(c.workDir, "tools"), logf); err != nil {
		return err
	}
	var werr error
	_, err := benchWAN(ctx, c, func(w *wanResult) {
		if err := writeWAN(c, w); err != nil {
			werr = err
		}
	})
	if err != nil {
		return err
	}
	return werr
}

func writeWAN(c config, w *wanResult) error {
	raw, _ := json.MarshalIndent(w, "", "  ")
	rawFile := filepath.Join(c.workDir, "results-wan-"+w.Started.Format("20060102-150405")+".json")
	os.WriteFile(rawFile, raw, 0o644)
	sec := w.section()
	if c.out == "-" {
		fmt.Print(sec)
		return nil
	}
	old, _ := os.ReadFile(c.out)
	if err := os.WriteFile(c.out, []byte(spliceSection(string(old), sec, wanBegin, wanEnd)), 0o644); err != nil {
		return err
	}
	logf("wrote the WAN section of %s (raw samples: %s)", c.out, rawFile)
	return nil
}
