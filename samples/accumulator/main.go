// Command accumulator is a sample immortal: it adds 1..N through a chain of
// self-calls, each logged before it runs, while a ticker feeds it impulses.
// Run it with `ambr run ./samples/accumulator`; kill it any way you like and
// run it again: it ends with count N, sum N(N+1)/2 and all its ticks.
package main

import (
	"context"
	"flag"
	"os"
	"time"

	"github.com/ambr-dev/ambr/engine/immortal"
	"github.com/ambr-dev/ambr/samples/accumulator/accum"
)

func main() {
	target := flag.Int("target", 200, "add 1..target")
	ticks := flag.Int("ticks", 10, "impulses to wait for")
	every := flag.Duration("tick-every", 20*time.Millisecond, "how often the ticker sends an impulse")
	print := flag.Int("print-every", 20, "print progress every n adds")
	flag.Parse()
	app := accum.New(accum.InitArgs{Target: *target, Ticks: *ticks}, os.Stdout, *print)
	go accum.Tick(context.Background(), app, *every)
	immortal.Main(app)
}
