package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
)

// floorResult is the machine's own limit, measured in the same run as the
// tools: hashing and writing the unique bytes, the source registry's serving
// of them, and the target registry's ingest of them.
type floorResult struct {
	Bytes       int64
	HashSecs    float64 // one stream of sha256, from the page cache
	HashParSecs float64 // GOMAXPROCS streams
	// HashWriteSecs is (a)'s floor as issue 5 defines it: GOMAXPROCS
	// streams hash the unique bytes and write them into one file, no
	// fsync; HashWriteSyncSecs adds the fsync that makes it durable.
	HashWriteSecs     float64
	HashWriteSyncSecs float64
	// FetchSecs is the source registry serving every unique config and
	// layer to 8 parallel GETs that discard the bytes: a bound on job (a)
	// for any tool, set by the registry, not the tool.
	FetchSecs      float64
	Ingest         map[int]float64 // parallel uploads -> median seconds
	BestIngestPar  int
	BestIngestSecs float64
}

// blobFile is where docker-registry's filesystem driver keeps a blob.
func blobFile(storage, d string) string {
	h := hexOf(d)
	return filepath.Join(storage, "docker", "registry", "v2", "blobs", "sha256", h[:2], h, "data")
}

// measureFloor measures the floors against the set's unique blobs (as
// stored by the source registry at srcStorage, served at srcHost).
func measureFloor(ctx context.Context, set *imageSet, srcStorage, srcHost, work string, runs int, logf func(string, ...any)) (floorResult, error) {
	var files []string
	var sizes []int64
	r := floorResult{Ingest: map[int]float64{}}
	for _, b := range set.blobs() {
		files = append(files, blobFile(srcStorage, b.Digest))
		sizes = append(sizes, b.Size)
		r.Bytes += b.Size
	}
	// Warm the page cache, then time.
	if _, err := hashFiles(files, 1); err != nil {
		return r, err
	}
	out := filepath.Join(work, "floor.out")
	defer os.Remove(out)
	var one, par, hw, hws, fe []float64
	for range runs {
		s, err := hashFiles(files, 1)
		if err != nil {
			return r, err
		}
		one = append(one, s)
		s, _ = hashFiles(files, runtime.GOMAXPROCS(0))
		par = append(par, s)
		if s, err = hashWrite(files, sizes, out, runtime.GOMAXPROCS(0), false); err != nil {
			return r, err
		}
		hw = append(hw, s)
		if s, err = hashWrite(files, sizes, out, runtime.GOMAXPROCS(0), true); err != nil {
			return r, err
		}
		hws = append(hws, s)
		if s, err = fetchAll(ctx, set, srcHost, 8); err != nil {
			return r, err
		}
		fe = append(fe, s)
	}
	r.HashSecs, r.HashParSecs = median(one), median(par)
	r.HashWriteSecs, r.HashWriteSyncSecs, r.FetchSecs = median(hw), median(hws), median(fe)
	logf("floor: sha256 of %.0f MiB: %.2fs one stream, %.2fs with %d; hash and write %.2fs, with fsync %.2fs; source serving alone %.2fs",
		float64(r.Bytes)/mib, r.HashSecs, r.HashParSecs, runtime.GOMAXPROCS(0), r.HashWriteSecs, r.HashWriteSyncSecs, r.FetchSecs)

	for _, p := range []int{1, 4, 8} {
		var secs []float64
		for range runs {
			s, err := ingestOnce(ctx, set, files, sizes, work, p)
			if err != nil {
				return r, fmt.Errorf("ingest floor with %d streams: %w", p, err)
			}
			secs = append(secs, s)
		}
		r.Ingest[p] = median(secs)
		logf("floor: registry ingest with %d parallel uploads: %.2fs (%.0f MiB/s)", p, r.Ingest[p], float64(r.Bytes)/mib/r.Ingest[p])
		if r.BestIngestSecs == 0 || r.Ingest[p] < r.BestIngestSecs {
			r.BestIngestSecs, r.BestIngestPar = r.Ingest[p], p
		}
	}
	return r, nil
}

// hashFiles reads and hashes every file with n workers; it returns seconds.
func hashFiles(files []string, n int) (float64, error) {
	start := time.Now()
	err := hashEach(files, n, func(int) io.Writer { return io.Discard })
	return time.Since(start).Seconds(), err
}

// hashWrite hashes every file with n workers and writes it into out, each
// at its own offset as in an archive; with sync, out is fsynced at the end.
func hashWrite(files []string, sizes []int64, out string, n int, sync bool) (float64, error) {
	os.Remove(out)
	f, err := os.Create(out)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	offs := make([]int64, len(files))
	var total int64
	for i, sz := range sizes {
		offs[i] = total
		total += sz
	}
	start := time.Now()
	if err := hashEach(files, n, func(i int) io.Writer { return io.NewOffsetWriter(f, offs[i]) }); err != nil {
		return 0, err
	}
	if sync {
		if err := f.Sync(); err != nil {
			return 0, err
		}
	}
	return time.Since(start).Seconds(), nil
}

// hashEach reads every file with n workers through a 1 MiB buffer, hashing
// it and copying it to dst(i).
func hashEach(files []string, n int, dst func(i int) io.Writer) error {
	var g errgroup.Group
	g.SetLimit(n)
	for i, name := range files {
		g.Go(func() error {
			in, err := os.Open(name)
			if err != nil {
				return err
			}
			defer in.Close()
			_, err = io.CopyBuffer(io.MultiWriter(sha256.New(), dst(i)), in, make([]byte, 1<<20))
			return err
		})
	}
	return g.Wait()
}

// fetchAll GETs every unique config and layer from the source registry, n
// at a time, the largest first, and discards the bytes: what the source's
// serving alone costs, a bound on job (a) for any tool.
func fetchAll(ctx context.Context, set *imageSet, host string, n int) (float64, error) {
	type job struct {
		repo string
		b    blob
	}
	var jobs []job
	seen := map[string]bool{}
	for _, im := range set.Images {
		for _, m := range im.Manif {
			for _, b := range append([]blob{m.Config}, m.Layers...) {
				if !seen[b.Digest] {
					seen[b.Digest] = true
					jobs = append(jobs, job{im.Name, b})
				}
			}
		}
	}
	slices.SortFunc(jobs, func(a, b job) int { return int(b.b.Size - a.b.Size) })
	client := &http.Client{Transport: newTransport()}
	start := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(n)
	for _, j := range jobs {
		g.Go(func() error {
			req, err := http.NewRequestWithContext(gctx, http.MethodGet, "http://"+host+"/v2/"+j.repo+"/blobs/"+j.b.Digest, nil)
			if err != nil {
				return err
			}
			resp, err := client.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("GET %s: %s", req.URL, resp.Status)
			}
			got, err := io.CopyBuffer(io.Discard, resp.Body, make([]byte, 1<<20))
			if err == nil && got != j.b.Size {
				err = fmt.Errorf("GET %s: %d bytes, want %d", req.URL, got, j.b.Size)
			}
			return err
		})
	}
	err := g.Wait()
	return time.Since(start).Seconds(), err
}

// ingestOnce uploads every blob into a fresh registry, p at a time, the
// largest first, straight to the registry (as the tools are timed).
func ingestOnce(ctx context.Context, set *imageSet, files []string, sizes []int64, work string, p int) (float64, error) {
	storage := filepath.Join(work, "floor-target")
	if err := os.RemoveAll(storage); err != nil {
		return 0, err
	}
	reg, err := startRegistry(ctx, storage, filepath.Join(work, "conf"))
	if err != nil {
		return 0, err
	}
	defer func() { reg.stop(); os.RemoveAll(storage) }()
	pu := &pusher{base: "http://" + reg.Host, client: &http.Client{Transport: newTransport()}}
	order := make([]int, len(files))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return int(sizes[b] - sizes[a]) })
	bl := set.blobs()
	var next atomic.Int64
	start := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	for range p {
		g.Go(func() error {
			for {
				k := int(next.Add(1) - 1)
				if k >= len(order) {
					return nil
				}
				i := order[k]
				f, err := os.Open(files[i])
				if err != nil {
					return err
				}
				loc, err := pu.startUpload(gctx, "floor/x", "")
				if err == nil {
					err = pu.finishReader(gctx, loc, bl[i].Digest, f, sizes[i])
				}
				f.Close()
				if err != nil {
					return err
				}
			}
		})
	}
	err = g.Wait()
	return time.Since(start).Seconds(), err
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
