package bank

import (
	"encoding/json"
	"fmt"
	"sort"

	"github.com/ambr-dev/ambr/engine/immortal"
)

// Report is what Check found. Its JSON is the output of `ambr demo bank
// --json`.
type Report struct {
	Transfers   int            `json:"transfers"`
	Kills       int            `json:"kills"`
	Accounts    int            `json:"accounts"`
	TotalBefore int64          `json:"total_before"`
	TotalAfter  int64          `json:"total_after"`
	Outcomes    map[string]int `json:"outcomes"`
	// From the logs: Transfer calls the transfers instance logged, and
	// outcomes (results) the driver logged.
	LoggedTransfers int `json:"logged_transfers"`
	LoggedOutcomes  int `json:"logged_outcomes"`
	// From the newest checkpoints, taken after the driver had every outcome.
	LocksHeld int      `json:"locks_held"`
	QueuedOps int      `json:"queued_operations"`
	InFlight  int      `json:"orchestrations_in_flight"`
	Checks    Checks   `json:"checks"`
	Problems  []string `json:"problems,omitempty"`
	OK        bool     `json:"ok"`
}

// Checks are the properties the demo proves.
type Checks struct {
	MoneyConserved bool `json:"money_conserved"`
	OneOutcomeEach bool `json:"one_outcome_each"`
	NoLockHeld     bool `json:"no_lock_held"`
	LedgersMatch   bool `json:"ledgers_match_outcomes"`
}

// Finished reports whether the run is over: the driver has every outcome
// and the accounts and transfers instances have checkpointed the audit it
// asked for. Check needs it.
func Finished(accountsDir, transfersDir, driverDir string) bool {
	var d DriverState
	var ta, aa AuditState
	if !immortal.NewestState(driverDir, &d) || !d.Done {
		return false
	}
	if _, ok := immortal.NewestDurable(transfersDir, &ta); !ok || ta.Audited != d.Args.Transfers {
		return false
	}
	_, ok := immortal.NewestDurable(accountsDir, &aa)
	return ok && aa.Audited == d.Args.Transfers
}

// Check reads the three instances' logs and newest checkpoints (after
// Finished) and checks that money was conserved, each transfer has exactly
// one outcome, no lock is held, and each account's ledger agrees with the
// outcomes. An error means it could not read them.
func Check(accountsDir, transfersDir, driverDir string) (Report, error) {
	var d DriverState
	if !immortal.NewestState(driverDir, &d) {
		return Report{}, fmt.Errorf("no checkpoint of the driver in %s", driverDir)
	}
	var aa, ta AuditState
	accounts, ok := immortal.NewestDurable(accountsDir, &aa)
	if !ok {
		return Report{}, fmt.Errorf("no checkpoint of the accounts in %s", accountsDir)
	}
	transfers, ok := immortal.NewestDurable(transfersDir, &ta)
	if !ok {
		return Report{}, fmt.Errorf("no checkpoint of the transfers in %s", transfersDir)
	}
	_, payloads, err := immortal.LoggedCalls(transfersDir, "Transfer")
	if err != nil {
		return Report{}, fmt.Errorf("read the transfers' log: %w", err)
	}
	results, err := immortal.LoggedResults(driverDir)
	if err != nil {
		return Report{}, fmt.Errorf("read the driver's log: %w", err)
	}
	return Evaluate(Observed{Driver: d, Accounts: accounts, Transfers: transfers, TransferCalls: payloads, Results: results}), nil
}

// Observed is what Check read of the three instances.
type Observed struct {
	Driver              DriverState
	Accounts, Transfers *immortal.DurableState
	TransferCalls       map[string]int // Transfer calls logged by transfers, by payload
	Results             map[int64]int  // results logged by the driver, by call id
}

// Evaluate checks what was observed.
func Evaluate(o Observed) Report {
	d, accounts, transfers, payloads, results := o.Driver, o.Accounts, o.Transfers, o.TransferCalls, o.Results
	n := d.Args.Transfers
	r := Report{Transfers: n, Accounts: d.Args.Accounts, Outcomes: map[string]int{}}
	problem := func(format string, a ...any) { r.Problems = append(r.Problems, fmt.Sprintf(format, a...)) }

	// One outcome each: every transfer the driver issued has an outcome,
	// the transfers instance logged each Transfer call once, and the
	// driver logged one result per call.
	r.Checks.OneOutcomeEach = len(d.Issued) == n && len(d.Outcomes) == n
	for _, c := range payloads {
		r.LoggedTransfers += c
		if c != 1 {
			r.Checks.OneOutcomeEach = false
			problem("a Transfer call was logged %d times", c)
		}
	}
	for id, c := range results {
		r.LoggedOutcomes += c
		if c != 1 {
			r.Checks.OneOutcomeEach = false
			problem("the driver logged %d results for call %d", c, id)
		}
	}
	if r.LoggedTransfers != n || r.LoggedOutcomes != n {
		r.Checks.OneOutcomeEach = false
		problem("%d transfers, but %d Transfer calls and %d outcomes logged", n, r.LoggedTransfers, r.LoggedOutcomes)
	}
	for _, t := range d.Issued {
		o, ok := d.Outcomes[t.ID]
		if !ok {
			r.Checks.OneOutcomeEach = false
			problem("transfer %s has no outcome", t.ID)
			continue
		}
		r.Outcomes[o.Outcome]++
	}

	// Money and ledgers, from the accounts' entities.
	keys := AccountKeys(d.Args.Accounts)
	r.TotalBefore = int64(len(keys)) * InitialBalance
	ledgers := map[string]map[string]int64{}
	names := make([]string, 0, len(accounts.Entities))
	for k := range accounts.Entities {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		e := accounts.Entities[k]
		if e.LockedBy != "" {
			r.LocksHeld++
			problem("%s is locked by %s", k, e.LockedBy)
		}
		r.QueuedOps += len(e.Queue)
		var a Account
		if e.State == nil {
			continue // locked and released before any operation
		}
		if err := json.Unmarshal(e.State, &a); err != nil {
			problem("account %s: %v", k, err)
			continue
		}
		r.TotalAfter += a.Balance
		ledgers[k] = a.Ledger
	}
	// Accounts never touched still hold their initial balance.
	for _, key := range keys {
		if _, ok := accounts.Entities[AccountName+"@"+key]; !ok || accounts.Entities[AccountName+"@"+key].State == nil {
			r.TotalAfter += InitialBalance
		}
	}
	r.Checks.MoneyConserved = r.TotalAfter == r.TotalBefore
	if !r.Checks.MoneyConserved {
		problem("the accounts hold %d, they started with %d", r.TotalAfter, r.TotalBefore)
	}
	r.InFlight = len(transfers.Orchestrations)
	r.Checks.NoLockHeld = r.LocksHeld == 0 && r.QueuedOps == 0 && r.InFlight == 0
	if r.InFlight > 0 || r.QueuedOps > 0 {
		problem("%d transfers still in flight, %d operations queued", r.InFlight, r.QueuedOps)
	}
	r.Checks.LedgersMatch = true
	for _, t := range d.Issued {
		want := int64(0)
		if d.Outcomes[t.ID].Outcome == OutcomeDone {
			want = t.Amount
		}
		from, to := ledgers[AccountName+"@"+t.From][t.ID], ledgers[AccountName+"@"+t.To][t.ID]
		if from != -want || to != want {
			r.Checks.LedgersMatch = false
			problem("transfer %s (%s, %d from %s to %s): the ledgers say %+d and %+d", t.ID, d.Outcomes[t.ID].Outcome, t.Amount, t.From, t.To, from, to)
		}
	}
	c := r.Checks
	r.OK = c.MoneyConserved && c.OneOutcomeEach && c.NoLockHeld && c.LedgersMatch && len(r.Problems) == 0
	return r
}
