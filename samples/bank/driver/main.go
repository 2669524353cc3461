// Command driver is the bank sample's client: random transfers among the
// accounts, several at a time. Run it with `ambr run ./samples/bank/driver
// --name driver -- --transfers transfers --bank bank --count 500`. Its flags
// matter on its first start only (they are its logged init args).
package main

import (
	"flag"
	"os"
	"time"

	"github.com/ambr-dev/ambr/engine/immortal"
	"github.com/ambr-dev/ambr/samples/bank/bank"
)

func main() {
	var a bank.DriverArgs
	flag.StringVar(&a.TransfersApp, "transfers", "transfers", "the instance that runs the transfers")
	flag.StringVar(&a.AccountsApp, "bank", "bank", "the instance that hosts the accounts")
	flag.DurationVar(&a.Timeout, "timeout", 2*time.Second, "how long a transfer waits for an account's answer before it takes its money back")
	flag.IntVar(&a.Transfers, "count", 500, "how many transfers to make")
	flag.IntVar(&a.Accounts, "accounts", 4, "among how many accounts")
	flag.IntVar(&a.Parallel, "parallel", 8, "how many transfers in flight at a time")
	flag.Int64Var(&a.MaxAmount, "max-amount", 400, "the largest amount of one transfer")
	flag.Parse()
	immortal.Main(bank.NewDriver(a, os.Stdout))
}
