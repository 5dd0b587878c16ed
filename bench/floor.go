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
// tools: hashing the unique bytes from the page cache, and the target
// registry's ingest of them.
type floorResult struct {
	Bytes          int64
	HashSecs       float64         // one stream of sha256
	HashParSecs    float64         // GOMAXPROCS streams
	Ingest         map[int]float64 // parallel uploads -> median seconds
	BestIngestPar  int
	BestIngestSecs float64
	// DirectSecs is the best parallelism again without the counting proxy:
	// what the proxy itself costs.
	DirectSecs float64
}

// blobFile is where docker-registry's filesystem driver keeps a blob.
func blobFile(storage, d string) string {
	h := hexOf(d)
	return filepath.Join(storage, "docker", "registry", "v2", "blobs", "sha256", h[:2], h, "data")
}

// measureFloor hashes the set's unique blobs (as stored by the source
// registry) and uploads them into fresh registries with 1, 4 and 8 streams.
func measureFloor(ctx context.Context, set *imageSet, srcStorage, work string, runs int, logf func(string, ...any)) (floorResult, error) {
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
	var one, par []float64
	for range runs {
		s, err := hashFiles(files, 1)
		if err != nil {
			return r, err
		}
		one = append(one, s)
		s, _ = hashFiles(files, runtime.GOMAXPROCS(0))
		par = append(par, s)
	}
	r.HashSecs, r.HashParSecs = median(one), median(par)
	logf("floor: sha256 of %.0f MiB: %.2fs one stream, %.2fs with %d", float64(r.Bytes)/mib, r.HashSecs, r.HashParSecs, runtime.GOMAXPROCS(0))

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
	var secs []float64
	for range runs {
		s, err := ingestOnce(ctx, set, files, sizes, work, -r.BestIngestPar)
		if err != nil {
			return r, err
		}
		secs = append(secs, s)
	}
	r.DirectSecs = median(secs)
	logf("floor: registry ingest with %d parallel uploads, no proxy: %.2fs", r.BestIngestPar, r.DirectSecs)
	return r, nil
}

// hashFiles reads and hashes every file with n workers; it returns seconds.
func hashFiles(files []string, n int) (float64, error) {
	start := time.Now()
	var g errgroup.Group
	g.SetLimit(n)
	for _, f := range files {
		g.Go(func() error {
			fh, err := os.Open(f)
			if err != nil {
				return err
			}
			defer fh.Close()
			h := sha256.New()
			buf := make([]byte, 1<<20)
			_, err = io.CopyBuffer(h, fh, buf)
			return err
		})
	}
	err := g.Wait()
	return time.Since(start).Seconds(), err
}

// ingestOnce uploads every blob into a fresh registry behind a counting
// proxy (as the tools see it), p at a time, the largest first; a negative p
// means -p at a time straight to the registry.
func ingestOnce(ctx context.Context, set *imageSet, files []string, sizes []int64, work string, p int) (float64, error) {
	direct := p < 0
	if direct {
		p = -p
	}
	storage := filepath.Join(work, "floor-target")
	if err := os.RemoveAll(storage); err != nil {
		return 0, err
	}
	reg, err := startRegistry(ctx, storage, filepath.Join(work, "conf"))
	if err != nil {
		return 0, err
	}
	defer func() { reg.stop(); os.RemoveAll(storage) }()
	px, err := startProxy(reg.Host)
	if err != nil {
		return 0, err
	}
	defer px.close()
	pu := &pusher{base: "http://" + px.Host, client: &http.Client{Transport: newTransport()}}
	if direct {
		pu.base = "http://" + reg.Host
	}
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
