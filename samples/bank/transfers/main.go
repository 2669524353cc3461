// Command transfers is the bank sample's orchestration host: one Transfer
// orchestration per transfer, locking both accounts. Run it with
// `ambr run ./samples/bank/transfers --name transfers -- --accounts bank`.
package main

import (
	"flag"
	"time"

	"github.com/ambr-dev/ambr/engine/immortal"
	"github.com/ambr-dev/ambr/samples/bank/bank"
)

func main() {
	accounts := flag.String("accounts", "bank", "the instance that hosts the accounts")
	timeout := flag.Duration("timeout", 2*time.Second, "how long a transfer waits for an account's answer before it takes its money back")
	flag.Parse()
	immortal.Main(bank.NewTransfers(*accounts, *timeout))
}
