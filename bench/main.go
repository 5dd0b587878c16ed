// Command bench runs ferry side by side with crane, skopeo and regctl on a
// generated, seeded image set served by local docker-registry processes, and
// writes the medians to docs/performance.md. Run it with `make bench`
// (BENCHFLAGS="-scale 0.25 -runs 3" for a quick look); -h lists the flags.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

type config struct {
	scale     float64
	runs      int
	jobs      map[string]bool
	scales    []float64
	scaleRuns int
	out       string
	seed      uint64
	tools     []string
	bigMiB    int
	workDir   string
	floorRuns int
	// onlyScales runs just the scaling study and splices its section into
	// the existing report.
	onlyScales bool
	// onlyYAML runs just the YAML study (bench/yaml.go).
	onlyYAML bool
	// onlyDelta runs just the delta study (bench/delta.go).
	onlyDelta bool
	yamlSizes []int
	yamlFerry string
	yamlArgs  []string
	// The WAN job (bench/wan.go); onlyWAN runs just it.
	onlyWAN   bool
	wanImages int
	wanDelay  time.Duration
	wanRuns   int
	wanPar    int
	wanAuth   bool
	wanTools  []string
}

// The hand-written section on request counts over a slow link (from
// pkg/transfer's request-count test), which a full run carries over.
const (
	handSlowLinkBegin = "<!-- hand:slow-link -->"
	handSlowLinkEnd   = "<!-- /hand:slow-link -->"
)

func main() {
	var c config
	var jobs, scales, tools, yamlSizes, yamlArgs, wanTools string
	flag.Float64Var(&c.scale, "scale", 1, "size of the image set: 1 is about 1.5 GiB of unique blobs in 12 repositories")
	flag.IntVar(&c.runs, "runs", 5, "runs per tool and job (medians are reported); 3 for a quick look")
	flag.StringVar(&jobs, "jobs", "a,b,c,floor,rerun,wan", "which of a (pkg), b (unpkg), c (relocate), floor, rerun, wan (many small images across a slow link) to run")
	flag.StringVar(&scales, "scales", "", `scaling study, e.g. "0.25,1,4" (off by default: 4x alone is ~6 GiB per tool and run)`)
	flag.IntVar(&c.scaleRuns, "scale-runs", 3, "runs per tool and job in the scaling study")
	flag.StringVar(&c.out, "out", "docs/performance.md", "markdown report to write")
	flag.Uint64Var(&c.seed, "seed", 1, "seed of the generated image set")
	flag.StringVar(&tools, "tools", "ferry,"+ferryNoSupply+",crane,skopeo,regctl", "tools to compare ("+ferryNoSupply+" is ferry with --supply-chain=false)")
	flag.IntVar(&c.bigMiB, "big-layer", 0, "add a repository with one layer of this many MiB (1024 checks memory on a 1 GiB layer)")
	flag.StringVar(&c.workDir, "work", "bench/out", "cache, tools and scratch directory")
	flag.IntVar(&c.floorRuns, "floor-runs", 3, "repetitions of each floor measurement")
	flag.BoolVar(&c.onlyScales, "only-scales", false, "run only the -scales study and replace that section of the existing -out report")
	flag.BoolVar(&c.onlyYAML, "only-yaml", false, "run only the YAML study (scan and rewrite memory against input size) and replace that section of the -out report")
	flag.BoolVar(&c.onlyDelta, "only-delta", false, "run only the delta study (v1 and v2 releases of the set at -scale; pkg of v2 in full and with --have, -runs times) and replace that section of the -out report")
	flag.StringVar(&yamlSizes, "yaml-sizes", "1,10,100", "input sizes in MiB for -only-yaml")
	flag.StringVar(&c.yamlFerry, "yaml-ferry", "", "ferry binary for -only-yaml (default: build this tree)")
	flag.StringVar(&yamlArgs, "yaml-args", "", "extra ferry arguments for -only-yaml, space-separated")
	flag.BoolVar(&c.onlyWAN, "only-wan", false, "run only the WAN job (many small images behind delaying proxies) and replace that section of the -out report")
	flag.IntVar(&c.wanImages, "wan-images", 200, "images in the WAN job's set (every 5th a 2-platform index)")
	flag.DurationVar(&c.wanDelay, "wan-delay", 25*time.Millisecond, "delay the WAN job's proxies add to every request")
	flag.IntVar(&c.wanRuns, "wan-runs", 3, "runs per tool in the WAN job (medians are reported)")
	flag.IntVar(&c.wanPar, "wan-par", 8, "how many `crane copy` commands the WAN job runs at a time")
	flag.BoolVar(&c.wanAuth, "wan-auth", true, "the WAN job's proxies ask for tokens as Docker Hub does")
	flag.StringVar(&wanTools, "wan-tools", "ferry,crane,regctl,skopeo", "tools in the WAN job")
	traceFile := flag.String("trace", "", "write one line per request the proxies answer to this file (arrival and end in ms, proxy, method, path): where a tool's time goes")
	flag.Parse()
	if *traceFile != "" {
		f, err := os.Create(*traceFile)
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench: -trace: %v\n", err)
			os.Exit(2)
		}
		defer f.Close()
		traceOut = f
	}
	c.wanTools = strings.Split(wanTools, ",")
	if c.wanImages < 1 || c.wanRuns < 1 || c.wanPar < 1 || c.wanDelay < 0 {
		fmt.Fprintln(os.Stderr, "bench: -wan-images, -wan-runs and -wan-par must be at least 1 and -wan-delay not negative")
		os.Exit(2)
	}
	for _, s := range strings.Split(yamlSizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			fmt.Fprintf(os.Stderr, "bench: -yaml-sizes: %q is not a positive number of MiB\n", s)
			os.Exit(2)
		}
		c.yamlSizes = append(c.yamlSizes, n)
	}
	c.yamlArgs = strings.Fields(yamlArgs)
	c.jobs = map[string]bool{}
	for _, j := range strings.Split(jobs, ",") {
		c.jobs[strings.TrimSpace(j)] = true
	}
	for _, s := range strings.Split(scales, ",") {
		if s = strings.TrimSpace(s); s != "" {
			f, err := strconv.ParseFloat(s, 64)
			if err != nil || f <= 0 {
				fmt.Fprintf(os.Stderr, "bench: -scales: %q is not a positive number\n", s)
				os.Exit(2)
			}
			c.scales = append(c.scales, f)
		}
	}
	c.tools = strings.Split(tools, ",")
	if c.onlyScales && len(c.scales) == 0 {
		fmt.Fprintln(os.Stderr, "bench: -only-scales needs -scales")
		os.Exit(2)
	}
	if c.runs < 1 || c.scale <= 0 {
		fmt.Fprintln(os.Stderr, "bench: -runs must be at least 1 and -scale positive")
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		if context.Cause(ctx) != nil {
			time.Sleep(200 * time.Millisecond) // let killed tools exit
			runCleanups()
			fmt.Fprintln(os.Stderr, "bench: interrupted; registries stopped")
			os.Exit(130)
		}
	}()
	run := run
	if c.onlyYAML {
		run = runYAMLStudy
	}
	if c.onlyDelta {
		run = runDeltaStudy
	}
	if c.onlyWAN {
		run = runWANOnly
	}
	err := run(ctx, c)
	runCleanups()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func logf(f string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s bench: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(f, args...))
}

func run(ctx context.Context, c config) error {
	if _, err := os.Stat("/usr/bin/time"); err != nil {
		return fmt.Errorf("/usr/bin/time not found: apt-get install -y time")
	}
	if _, err := os.Stat("go.mod"); err != nil {
		return fmt.Errorf("run from the repository root (make bench)")
	}
	started := time.Now()
	toolsDir := filepath.Join(c.workDir, "tools")
	if err := buildTools(ctx, toolsDir, logf); err != nil {
		return err
	}
	abs, _ := filepath.Abs(toolsDir)
	var ts []*tool
	for _, n := range c.tools {
		n = strings.TrimSpace(n)
		// ferry-cN: ferry with --concurrency N beside the default.
		if v, ok := strings.CutPrefix(n, "ferry-c"); ok {
			if k, err := strconv.Atoi(v); err == nil && k > 0 {
				ts = append(ts, ferryTool(filepath.Join(abs, "ferry"), n, "--concurrency", v))
				continue
			}
		}
		switch n {
		case "ferry":
			ts = append(ts, ferryTool(filepath.Join(abs, "ferry"), "ferry"))
		case ferryNoSupply:
			ts = append(ts, ferryTool(filepath.Join(abs, "ferry"), ferryNoSupply, "--supply-chain=false"))
		case "crane":
			ts = append(ts, craneTool(filepath.Join(abs, "crane")))
		case "skopeo":
			ts = append(ts, skopeoTool())
		case "regctl":
			ts = append(ts, regctlTool(filepath.Join(abs, "regctl")))
		default:
			return fmt.Errorf("-tools: unknown tool %q", n)
		}
	}
	for _, t := range ts {
		for _, j := range []string{jobPkg, jobUnpkg, jobRelocate} {
			if ok, why := t.can(j); !ok {
				logf("%s job %s: %s", t.name, j, why)
			}
		}
	}
	rep := &report{Started: started, Config: c, Machine: machine(), Tools: ts}
	loadTick := time.NewTicker(time.Minute)
	defer loadTick.Stop()
	rep.Machine.Load = append(rep.Machine.Load, loadAvg())
	go func() {
		for range loadTick.C {
			loadMu.Lock()
			rep.Machine.Load = append(rep.Machine.Load, loadAvg())
			loadMu.Unlock()
		}
	}()
	var res *scaleResult
	if !c.onlyScales {
		var err error
		if res, err = benchScale(ctx, c, c.scale, c.runs, c.jobs, ts, true); err != nil {
			return err
		}
		rep.Main = res
	}
	for _, s := range c.scales {
		j := map[string]bool{jobPkg: c.jobs[jobPkg], jobUnpkg: c.jobs[jobUnpkg], jobRelocate: c.jobs[jobRelocate], "floor": c.jobs["floor"]}
		var r *scaleResult
		if res != nil && s == c.scale && c.scaleRuns <= c.runs {
			r = res
		} else {
			var err error
			if r, err = benchScale(ctx, c, s, c.scaleRuns, j, ts, false); err != nil {
				return err
			}
		}
		rep.Scales = append(rep.Scales, r)
	}
	if c.jobs["wan"] && !c.onlyScales {
		var err error
		if rep.WAN, err = benchWAN(ctx, c, nil); err != nil {
			return err
		}
	}
	rep.Elapsed = time.Since(started)
	loadTick.Stop()
	loadMu.Lock()
	defer loadMu.Unlock()
	rep.Machine.Load = summarizeLoad(rep.Machine.Load)
	raw, _ := json.MarshalIndent(rep, "", "  ")
	rawFile := filepath.Join(c.workDir, "results-"+started.Format("20060102-150405")+".json")
	os.WriteFile(rawFile, raw, 0o644)
	old, _ := os.ReadFile(c.out)
	var doc string
	if c.onlyScales {
		doc = splice(string(old), rep.scalingSection())
	} else {
		doc = rep.markdown()
		// A report without a scaling study keeps the last one.
		if sec, ok := section(string(old)); ok && len(rep.Scales) == 0 && !strings.Contains(sec, scalePlaceholder) {
			doc = splice(doc, sec)
		}
		doc = keepYAMLSection(doc, string(old))
		doc = keepDeltaSection(doc, string(old))
		// Written by hand from deterministic tests, not by this program.
		doc = keepSection(doc, string(old), handSlowLinkBegin, handSlowLinkEnd)
		if rep.WAN != nil {
			doc = spliceSection(doc, rep.WAN.section(), wanBegin, wanEnd)
		} else {
			doc = keepSection(doc, string(old), wanBegin, wanEnd)
		}
	}
	if err := os.WriteFile(c.out, []byte(doc), 0o644); err != nil {
		return err
	}
	logf("wrote %s (raw samples: %s) after %s", c.out, rawFile, rep.Elapsed.Round(time.Second))
	return nil
}

// sample is one run of one tool on one job.
type sample struct {
	usage
	Disk int64 // artifact size (a) or target registry storage (b, c)
	// RegCPU is the CPU seconds the source and target registries used
	// during the run: with the tool's own, the machine's whole work.
	RegCPU      float64
	Recv        int64 // bytes the target registry received (b, c; counting run)
	SrcSent     int64 // bytes the source registry sent (a, c; counting run)
	BlobUploads int
	Distinct    int
	Mounts      int
	Check       checkResult
	Err         string
	// Plain is the wall time of job a without the fsync of its output
	// that Wall includes (the artifact made durable, for every tool alike).
	Plain float64 `json:",omitempty"`
	// SrcKinds and TgtKinds count the requests each registry saw, by
	// requestKind (counting runs and the WAN job).
	SrcKinds, TgtKinds map[string]int `json:",omitempty"`
}

// cell is every sample of a tool on a job: the counting run, then the
// timed first runs and reruns.
type cell struct {
	Tool, Job   string
	Unavailable string
	Counted     *sample
	Runs        []sample
	Reruns      []sample
}

type scaleResult struct {
	Scale    float64
	Set      *imageSet
	Floor    *floorResult
	Cells    map[string]*cell // tool + " " + job
	LockFrom string
	Elapsed  time.Duration
}

func (r *scaleResult) cell(tool, job string) *cell { return r.Cells[tool+" "+job] }

// benchScale generates (or reuses) the set at scale, measures the floor and
// runs every tool on every job runs times, alternating the order of tools.
func benchScale(ctx context.Context, c config, scale float64, runs int, jobs map[string]bool, ts []*tool, main bool) (*scaleResult, error) {
	start := time.Now()
	res := &scaleResult{Scale: scale, Cells: map[string]*cell{}}
	setDir := cachedSetDir(c.workDir, c.seed, scale, c.bigMiB)
	storage := filepath.Join(setDir, "storage")
	set, err := loadSet(setDir)
	var src *registry
	if err != nil {
		logf("generating the image set at scale %g (seed %d) into %s", scale, c.seed, setDir)
		if err := resetDir(setDir); err != nil {
			return nil, err
		}
		if src, err = startRegistry(ctx, storage, filepath.Join(setDir, "conf")); err != nil {
			return nil, err
		}
		if set, err = generate(ctx, src.Host, c.seed, scale, c.bigMiB, logf); err != nil {
			return nil, err
		}
		if err := saveSet(setDir, set); err != nil {
			return nil, err
		}
	} else {
		logf("reusing the image set in %s", setDir)
		if src, err = startRegistry(ctx, storage, filepath.Join(setDir, "conf")); err != nil {
			return nil, err
		}
	}
	defer src.stop()
	res.Set = set
	logf("set: %d images, %d unique blobs, %.2f GiB unique, %.2f GiB counting each repository's own copy",
		len(set.Images), set.UniqueBlobs, gib(set.UniqueBytes), gib(set.TotalBytes))

	work := filepath.Join(c.workDir, "work", fmt.Sprintf("scale%g", scale))
	if err := resetDir(work); err != nil {
		return nil, err
	}
	srcProxy, err := startProxy(src.Host)
	if err != nil {
		return nil, err
	}
	defer srcProxy.close()

	if jobs["floor"] {
		f, err := measureFloor(ctx, set, storage, src.Host, work, c.floorRuns, logf)
		if err != nil {
			return nil, err
		}
		res.Floor = &f
	}

	// The release and ferry's lock name the source registry itself; the
	// counting run gets a copy of the lock that names its proxy.
	release := filepath.Join(work, "release.yaml")
	lockFile := filepath.Join(work, "images.lock.yaml")
	countedLock := filepath.Join(work, "images.counted.lock.yaml")
	if err := os.WriteFile(release, set.releaseYAML(src.Host), 0o644); err != nil {
		return nil, err
	}
	res.LockFrom = "written by the harness (`ferry resolve` not available)"
	ferryBin := filepath.Join(c.workDir, "tools", "ferry")
	if ferryHas(ferryBin, "resolve") {
		cmd := exec.CommandContext(ctx, ferryBin, "resolve", "-f", release, "--lock-output", lockFile, "--insecure-registry", src.Host, "-q")
		if out, err := cmd.CombinedOutput(); err != nil {
			logf("ferry resolve failed, the harness writes the lock: %v: %s", err, strings.TrimSpace(string(out)))
		} else {
			res.LockFrom = "`ferry resolve -f release.yaml`"
		}
	}
	if _, err := os.Stat(lockFile); err != nil {
		if err := os.WriteFile(lockFile, set.lockYAML(src.Host), 0o644); err != nil {
			return nil, err
		}
	}
	lockYAML, err := os.ReadFile(lockFile)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(countedLock, []byte(strings.ReplaceAll(string(lockYAML), src.Host, srcProxy.Host)), 0o644); err != nil {
		return nil, err
	}

	var order []*tool
	order = append(order, ts...)
	var finding *tool
	if main && jobs[jobPkg] && hasTool(ts, "skopeo") {
		finding = skopeoOCITool()
	}
	// Run -1 counts bytes, uploads and mounts through the counting proxies;
	// the timed runs after it go straight to the registries, because on a
	// small machine the proxy's own copying of every byte would be timed
	// with each tool and blur the differences between them.
	for r := -1; r < runs; r++ {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		counted := r < 0
		// A B C, then B C A, ...: drift on a noisy machine hits every tool alike.
		k := max(r, 0) % len(order)
		rot := append(append([]*tool{}, order[k:]...), order[:k]...)
		for _, job := range []string{jobPkg, jobUnpkg, jobRelocate} {
			if !jobs[job] {
				continue
			}
			list := rot
			if job == jobPkg && counted && finding != nil {
				list = append(append([]*tool{}, rot...), finding)
			}
			for _, t := range list {
				cl := res.Cells[t.name+" "+job]
				if cl == nil {
					cl = &cell{Tool: t.name, Job: job}
					res.Cells[t.name+" "+job] = cl
				}
				if ok, why := t.can(job); !ok {
					cl.Unavailable = why
					continue
				}
				e := &env{set: set, src: src.Host, srcReg: src, art: filepath.Join(work, "art", safeName(t.name)), lock: lockFile, tools: filepath.Join(c.workDir, "tools"),
					run: filepath.Join(work, "runs", fmt.Sprintf("%d-%s-%s", r, job, safeName(t.name)))}
				var px *proxy
				if counted {
					e.src, e.lock, px = srcProxy.Host, countedLock, srcProxy
				}
				if err := resetDir(e.run); err != nil {
					return nil, err
				}
				// The finding's one run is its counting run.
				rerun := jobs["rerun"] && t != finding && !counted
				first, again := runJob(ctx, t, job, e, px, rerun)
				switch {
				case counted && t != finding:
					cl.Counted = &first
				default:
					cl.Runs = append(cl.Runs, first)
				}
				if rerun {
					cl.Reruns = append(cl.Reruns, again)
				}
				label := fmt.Sprintf("run %d/%d", r+1, runs)
				if counted {
					label = "counting run"
				}
				msg := fmt.Sprintf("%s scale %g job %s %-11s %6.2fs cpu %6.2fs rss %4.0f MiB digests %s", label, scale, job, t.name, first.Wall, first.CPU, float64(first.RSS)/mib, first.Check)
				if rerun {
					msg += fmt.Sprintf("; rerun %.2fs", again.Wall)
				}
				if first.Err != "" {
					msg += "; error: " + first.Err
				}
				logf("%s", msg)
			}
		}
		// Artifacts are per run: free the disk (and page cache) before the next.
		os.RemoveAll(filepath.Join(work, "art"))
		os.RemoveAll(filepath.Join(work, "runs"))
	}
	res.Elapsed = time.Since(start)
	return res, nil
}

// safeName turns a tool name ("skopeo oci:") into a path element.
func safeName(s string) string {
	return strings.NewReplacer(" ", "-", ":", "").Replace(s)
}

func hasTool(ts []*tool, name string) bool {
	for _, t := range ts {
		if t.name == name {
			return true
		}
	}
	return false
}

// runJob runs a job once on fresh ground and, if rerun, once more with
// everything left in place. b and c get a fresh target registry, removed
// afterwards. With srcProxy (e.src names it), the run is a counting run:
// the target gets a counting proxy too, and the sample holds what both saw.
func runJob(ctx context.Context, t *tool, job string, e *env, srcProxy *proxy, rerun bool) (first, again sample) {
	var tgt *registry
	var tgtProxy *proxy
	if job != jobPkg {
		storage := filepath.Join(e.run, "target")
		var err error
		if tgt, err = startRegistry(ctx, storage, filepath.Join(e.run, "conf")); err != nil {
			first.Err = err.Error()
			return
		}
		defer func() { tgt.stop(); os.RemoveAll(storage) }()
		e.tgt = tgt.Host
		if srcProxy != nil {
			if tgtProxy, err = startProxyOpts(tgt.Host, srcProxy.opts); err != nil {
				first.Err = err.Error()
				return
			}
			defer tgtProxy.close()
			e.tgt = tgtProxy.Host
		}
	}
	once := func(fresh bool, tag string) sample {
		var s sample
		steps, err := t.plan(job, e, fresh)
		if err != nil {
			s.Err = "setup: " + err.Error()
			return s
		}
		if srcProxy != nil {
			srcProxy.reset()
		}
		if tgtProxy != nil {
			tgtProxy.reset()
		}
		cpu0 := e.srcReg.cpuSeconds() + tgt.cpuSeconds()
		s.usage, err = execStepsN(ctx, steps, filepath.Join(e.run, tag), t.par)
		if err != nil {
			s.Err = err.Error()
		}
		if job == jobPkg && err == nil {
			// A tool that leaves its writes in the page cache hands their
			// cost to whatever runs next: every tool's artifact is made
			// durable inside the timing.
			s.Plain = s.Wall
			t0 := time.Now()
			if err := syncTree(e.art); err != nil {
				s.Err = "syncing the artifact: " + err.Error()
			}
			s.Wall += time.Since(t0).Seconds()
		}
		s.RegCPU = e.srcReg.cpuSeconds() + tgt.cpuSeconds() - cpu0
		if srcProxy != nil {
			k := srcProxy.reset()
			s.SrcSent, s.SrcKinds = k.Sent, k.Kinds
		}
		if tgtProxy != nil {
			k := tgtProxy.reset()
			s.Recv, s.BlobUploads, s.Distinct, s.Mounts, s.TgtKinds = k.Recv, k.BlobUploads, k.DistinctUploads, k.Mounts, k.Kinds
		}
		if tgt != nil {
			s.Disk = dirSize(tgt.Storage)
			repo := func(im image) string { return "bench/" + im.Name }
			if isFerry(t.name) {
				repo = relocatedRepos(filepath.Join(e.run, "relocated.lock.yaml"), e, repo)
			}
			s.Check = check(e.set, registryArtifact{ctx: ctx, host: tgt.Host, client: &http.Client{Transport: newTransport()}, repo: repo})
		} else {
			s.Disk = dirSize(e.art)
			a, err := t.artifact(e)
			if err != nil {
				s.Check = checkResult{Digests: countDigests(e.set), Missing: countDigests(e.set), Notes: []string{err.Error()}}
			} else {
				s.Check = check(e.set, a)
			}
		}
		return s
	}
	first = once(true, "first")
	if rerun && first.Err == "" {
		again = once(false, "rerun")
	} else if rerun {
		again.Err = "first run failed"
	}
	return first, again
}

func countDigests(s *imageSet) int {
	n := 0
	for _, im := range s.Images {
		n++
		if im.IsIndex {
			n += len(im.Manif)
		}
	}
	return n
}

// relocatedRepos reads ferry's lock-output (image / relocated pairs) and
// returns where each image landed, falling back to the path layout.
func relocatedRepos(file string, e *env, fallback func(image) string) func(image) string {
	m := map[string]string{}
	if f, err := os.Open(file); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		var cur string
		for sc.Scan() {
			l := strings.TrimSpace(sc.Text())
			if v, ok := strings.CutPrefix(l, "- image: "); ok {
				cur = strings.Trim(v, `"'`)
			} else if v, ok := strings.CutPrefix(l, "relocated: "); ok && cur != "" {
				v = strings.Trim(v, `"'`)
				if i := strings.IndexAny(v, "@"); i >= 0 {
					v = v[:i]
				}
				if host, repo, ok := strings.Cut(v, "/"); ok && host == e.tgt {
					if i := strings.LastIndex(repo, ":"); i >= 0 {
						repo = repo[:i]
					}
					m[cur] = repo
				}
			}
		}
	}
	return func(im image) string {
		if r, ok := m[srcRef(e, im)]; ok {
			return r
		}
		return fallback(im)
	}
}

var loadMu sync.Mutex

// summarizeLoad keeps min, median and max of the samples.
func summarizeLoad(l []string) []string {
	var xs []float64
	for _, s := range l {
		if f, err := strconv.ParseFloat(s, 64); err == nil {
			xs = append(xs, f)
		}
	}
	if len(xs) < 3 {
		return l
	}
	slices.Sort(xs)
	return []string{fmt.Sprintf("min %.1f", xs[0]), fmt.Sprintf("median %.1f", median(xs)), fmt.Sprintf("max %.1f", xs[len(xs)-1])}
}

func gib(n int64) float64 { return float64(n) / (1 << 30) }
