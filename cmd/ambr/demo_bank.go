package main

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ambr-dev/ambr/engine/immortal"
	"github.com/ambr-dev/ambr/samples/bank/bank"
)

// Instance names of the bank demo.
const (
	demoBankAccounts  = "demo-bank"
	demoBankTransfers = "demo-transfers"
	demoBankDriver    = "demo-driver"
)

type bankDemoOptions struct {
	transfers int
	accounts  int
	parallel  int
	timeout   time.Duration
	json      bool
}

// addBankDemoFlags adds the flags of `ambr demo bank` to the demo command.
func addBankDemoFlags(cmd *cobra.Command) *bankDemoOptions {
	var b bankDemoOptions
	cmd.Flags().IntVar(&b.transfers, "transfers", 500, "bank: how many random transfers the driver makes")
	cmd.Flags().IntVar(&b.accounts, "accounts", 4, "bank: among how many accounts (few, so that locks contend)")
	cmd.Flags().IntVar(&b.parallel, "parallel", 8, "bank: transfers in flight at a time")
	cmd.Flags().DurationVar(&b.timeout, "timeout", 2*time.Second, "bank: how long a transfer waits for an account before it takes its money back")
	cmd.Flags().BoolVar(&b.json, "json", false, "bank: print the report as JSON (progress goes to stderr)")
	return &b
}

// misusedBy returns a usage error if a bank flag was given to another demo.
func (b *bankDemoOptions) misusedBy(cmd *cobra.Command, demo string) error {
	if demo == "bank" {
		return nil
	}
	for _, f := range []string{"transfers", "accounts", "parallel", "timeout", "json"} {
		if cmd.Flags().Changed(f) {
			return usageErrorf("--%s is a flag of 'ambr demo bank', not of the %s demo", f, demo)
		}
	}
	return nil
}

// bank runs the bank demo: accounts as entities, transfers as
// orchestrations locking both accounts, a driver making random transfers,
// all three killed with SIGKILL again and again.
func (d *demoRun) bank(b *bankDemoOptions) error {
	if b.transfers < 1 || b.accounts < 2 || b.accounts > 10 || b.parallel < 1 || b.timeout <= 0 {
		return usageErrorf("bank: --transfers and --parallel must be ≥ 1, --accounts 2 to 10, --timeout > 0")
	}
	stdout := d.g.stdout
	if b.json {
		quiet := *d.g
		quiet.stdout = d.g.stderr
		d.g = &quiet
	}
	bins := map[string]string{}
	for _, s := range []string{"accounts", "transfers", "driver"} {
		bin, err := d.build("bank/" + s)
		if err != nil {
			return err
		}
		bins[s] = bin
	}
	for _, n := range []string{demoBankAccounts, demoBankTransfers, demoBankDriver} {
		if err := d.fresh(n); err != nil {
			return err
		}
	}
	d.printf("ambr demo bank: %s makes %d random transfers among %d accounts (%d at a time) through %s,\n", demoBankDriver, b.transfers, b.accounts, b.parallel, demoBankTransfers)
	d.printf("whose orchestrations lock both accounts (entities on %s), read, debit and credit, each with a %v timeout\n", demoBankAccounts, b.timeout)
	d.printf("and a refund path. All three are killed with SIGKILL %d times. (home %s, seed %d)\n\n", d.o.kills, d.home, d.seed)
	accounts := d.proc(demoBankAccounts, bins["accounts"], "")
	transfers := d.proc(demoBankTransfers, bins["transfers"], "")
	driver := d.proc(demoBankDriver, bins["driver"], "driver", "--transfers", demoBankTransfers, "--bank", demoBankAccounts,
		"--timeout", b.timeout.String(), "--count", strconv.Itoa(b.transfers),
		"--accounts", strconv.Itoa(b.accounts), "--parallel", strconv.Itoa(b.parallel))
	procs := []*demoProc{accounts, transfers, driver}
	for _, p := range procs {
		if err := p.start(); err != nil {
			return err
		}
	}
	points := make([]int, d.o.kills)
	for i := range points {
		points[i] = 1 + d.rng.IntN(max(1, b.transfers-1))
	}
	sort.Ints(points)
	for i, at := range points {
		if err := d.waitTransfers(transfers, at); err != nil {
			return err
		}
		if err := d.sleep(time.Duration(d.rng.IntN(30)) * time.Millisecond); err != nil {
			return err
		}
		victim := procs[d.rng.IntN(len(procs))]
		if err := victim.kill(i+1, d.o.kills, d.rng.IntN(2) == 0, fmt.Sprintf("after transfer %d was logged", at)); err != nil {
			return err
		}
	}
	if d.o.kills > 0 {
		d.printf("… no more kills; letting it finish\n")
	}
	deadline := time.Now().Add(2*time.Minute + time.Duration(b.transfers)*20*time.Millisecond)
	for !bank.Finished(accounts.dir(), transfers.dir(), driver.dir()) {
		if time.Now().After(deadline) {
			return problemErrorf("bank: the transfers did not all finish by %s; look at 'ambr log %s --from end'", deadline.Format(time.TimeOnly), demoBankDriver)
		}
		if err := d.sleep(20 * time.Millisecond); err != nil {
			return err
		}
	}
	for _, p := range procs {
		p.stop()
	}
	rep, err := bank.Check(accounts.dir(), transfers.dir(), driver.dir())
	if err != nil {
		return &exitError{code: exitUsage, err: fmt.Errorf("bank: read the instances: %w", err)}
	}
	rep.Kills = d.o.kills
	if b.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		d.printBankReport(rep)
	}
	if !rep.OK {
		return problemErrorf("bank: check failed: %s", strings.Join(rep.Problems, "; "))
	}
	return nil
}

func (d *demoRun) printBankReport(r bank.Report) {
	var outcomes []string
	for _, o := range []string{bank.OutcomeDone, bank.OutcomeInsufficient, bank.OutcomeRefunded, bank.OutcomeTimedOut, "failed"} {
		if r.Outcomes[o] > 0 {
			outcomes = append(outcomes, fmt.Sprintf("%s %d", o, r.Outcomes[o]))
		}
	}
	mark := func(ok bool) string {
		if ok {
			return "✓"
		}
		return "✗"
	}
	d.printf("\n%d transfers: %s\n", r.Transfers, strings.Join(outcomes, ", "))
	d.printf("%s money conserved: %d before, %d after, over %d accounts\n", mark(r.Checks.MoneyConserved), r.TotalBefore, r.TotalAfter, r.Accounts)
	d.printf("%s one outcome per transfer: %d Transfer calls logged by %s, %d outcomes by %s\n", mark(r.Checks.OneOutcomeEach), r.LoggedTransfers, demoBankTransfers, r.LoggedOutcomes, demoBankDriver)
	d.printf("%s no lock held: %d accounts locked, %d operations queued, %d transfers in flight\n", mark(r.Checks.NoLockHeld), r.LocksHeld, r.QueuedOps, r.InFlight)
	d.printf("%s every account's ledger agrees with the outcomes\n", mark(r.Checks.LedgersMatch))
	for _, p := range r.Problems {
		d.printf("  problem: %s\n", p)
	}
	if r.OK {
		d.printf("after %d kills.\n\n", r.Kills)
		d.printf("Look around: ambr replay %s --until 300 --json (binding.durable: transfers in flight, their history, where each waits)\n", demoBankTransfers)
		d.printf("             ambr replay %s --until end --json (binding.durable.entities: each account, its lock and queue) · ambr log %s --from end\n", demoBankAccounts, demoBankTransfers)
	}
}

// waitTransfers waits until the transfers instance has logged n Transfer
// calls.
func (d *demoRun) waitTransfers(transfers *demoProc, n int) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		calls, _, _ := immortal.LoggedCalls(transfers.dir(), "Transfer")
		if calls[demoBankDriver] >= n {
			return nil
		}
		if err := d.sleep(5 * time.Millisecond); err != nil {
			return err
		}
	}
	return problemErrorf("bank: %s did not log %d transfers within 60 s", demoBankTransfers, n)
}
