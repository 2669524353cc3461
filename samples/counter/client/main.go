// Command client is the counter sample's client immortal: on its first
// start it calls Inc() on the server --count times, one after the other, and
// keeps every result. Run it with `ambr run ./samples/counter/client --name
// client -- --server server --count 100`.
package main

import (
	"flag"
	"os"

	"github.com/ambr-dev/ambr/engine/immortal"
	"github.com/ambr-dev/ambr/samples/counter/counter"
)

func main() {
	server := flag.String("server", "server", "the server instance to call")
	count := flag.Int("count", 10, "how many times to call Inc()")
	flag.Parse()
	immortal.Main(counter.NewClient(counter.ClientArgs{Server: *server, Count: *count}, os.Stdout))
}
