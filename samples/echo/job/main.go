// Command job is the echo workload's job: it sends --count forks of --size
// bytes to the server, each a sequence number plus padding. See package echo.
package main

import (
	"flag"
	"os"

	"github.com/ambr-dev/ambr/engine/immortal"
	"github.com/ambr-dev/ambr/samples/echo/echo"
)

func main() {
	server := flag.String("server", "server", "the server instance")
	count := flag.Int("count", 100, "messages to send")
	size := flag.Int("size", 32<<10, "bytes per message")
	echoOn := flag.Bool("echo", false, "ask the server to echo every message")
	window := flag.Int("window", 16, "with --echo: messages awaiting their echo at most")
	burst := flag.Int("burst", 0, "without --echo: send this many messages per record, continuing by self-calls (0: all from the first record)")
	flag.Parse()
	immortal.Main(echo.NewJob(echo.JobArgs{Server: *server, Count: *count, Size: *size, Echo: *echoOn, Window: *window, Burst: *burst}, os.Stdout))
}
