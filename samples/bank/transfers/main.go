// Command transfers is the bank sample's orchestration host: one Transfer
// orchestration per transfer, locking both accounts. It takes no flags:
// each transfer names the accounts' instance and its timeout. Run it with
// `ambr run ./samples/bank/transfers --name transfers`.
package main

import (
	"github.com/ambr-dev/ambr/engine/immortal"
	"github.com/ambr-dev/ambr/samples/bank/bank"
)

func main() { immortal.Main(bank.NewTransfers()) }
