// Command server is the counter sample's server immortal: Inc() increments
// its count and returns it. Run it with `ambr run ./samples/counter/server
// --name server`.
package main

import (
	"os"

	"github.com/ambr-dev/ambr/engine/immortal"
	"github.com/ambr-dev/ambr/samples/counter/counter"
)

func main() { immortal.Main(counter.NewServer(os.Stdout)) }
