// Command ferry moves container images across an air gap without changing a digest.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/ferry-dev/ferry/pkg/cli"
)

func main() {
	// FERRY_CPUPROFILE=FILE writes a CPU profile, for performance work.
	if path := os.Getenv("FERRY_CPUPROFILE"); path != "" {
		if f, err := os.Create(path); err == nil && pprof.StartCPUProfile(f) == nil {
			code := run()
			pprof.StopCPUProfile()
			os.Exit(code)
		}
	}
	os.Exit(run())
}

func run() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	root, _ := cli.NewRoot()
	err := root.ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, cli.Message(err))
	}
	return cli.ExitCode(err)
}
