// Command server is the echo workload's server: it counts, checksums and
// optionally echoes the job's messages. See package echo.
package main

import (
	"context"
	"flag"
	"os"
	"time"

	"github.com/ambr-dev/ambr/engine/immortal"
	"github.com/ambr-dev/ambr/samples/echo/echo"
)

func main() {
	ballast := flag.Int("ballast-mib", 0, "carry this many MiB of ballast in the state (large checkpoints)")
	ticks := flag.Int("ticks", 0, "count this many self-impulses")
	every := flag.Duration("tick-every", time.Millisecond, "how often to fire a self-impulse")
	flag.Parse()
	app := echo.NewServer(echo.ServerArgs{BallastMiB: *ballast, Ticks: *ticks}, os.Stdout)
	if *ticks > 0 {
		go echo.Tick(context.Background(), app, *every)
	}
	immortal.Main(app)
}
