// Command client is the counter sample's client immortal: on its first
// start it calls Inc() on the server --count times, one after the other, and
// keeps every result. Run it with `ambr run ./samples/counter/client --name
// client -- --server server --count 100`.
package main

import (
	"context"
	"flag"
	"os"

	"github.com/ambr-dev/ambr/engine/immortal"
	"github.com/ambr-dev/ambr/samples/counter/counter"
)

func main() {
	server := flag.String("server", "server", "the server instance to call")
	count := flag.Int("count", 10, "how many times to call Inc()")
	interval := flag.Duration("interval", 0, "wait this long between calls (paced by logged impulses); 0 calls at once")
	flag.Parse()
	app := counter.NewClient(counter.ClientArgs{Server: *server, Count: *count, Paced: *interval > 0}, os.Stdout)
	if *interval > 0 {
		go counter.Pace(context.Background(), app, *interval)
	}
	immortal.Main(app)
}
