// Command accounts is the bank sample's entity host: one account entity
// per owner. Run it with `ambr run ./samples/bank/accounts --name bank`.
package main

import (
	"github.com/ambr-dev/ambr/engine/immortal"
	"github.com/ambr-dev/ambr/samples/bank/bank"
)

func main() { immortal.Main(bank.NewAccounts()) }
