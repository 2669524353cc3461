package bank

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/ambr-dev/ambr/engine/immortal"
)

// honest returns what a correct run of three transfers among alice, bob
// and carol leaves: 1 done (alice → bob 100), 2 refunded (bob → carol),
// 3 insufficient (carol → alice 5000).
func honest() Observed {
	issued := []Transfer{
		{ID: "1", From: "alice", To: "bob", Amount: 100},
		{ID: "2", From: "bob", To: "carol", Amount: 50},
		{ID: "3", From: "carol", To: "alice", Amount: 5000},
	}
	d := DriverState{Args: DriverArgs{Transfers: 3, Accounts: 3}, Issued: issued, Done: true, Outcomes: map[string]Outcome{
		"1": {ID: "1", Outcome: OutcomeDone}, "2": {ID: "2", Outcome: OutcomeRefunded}, "3": {ID: "3", Outcome: OutcomeInsufficient},
	}}
	acct := func(balance int64, ledger map[string]int64) *immortal.EntityState {
		b, _ := json.Marshal(Account{Balance: balance, Ledger: ledger})
		return &immortal.EntityState{State: b}
	}
	accounts := &immortal.DurableState{Entities: map[string]*immortal.EntityState{
		"account@alice": acct(900, map[string]int64{"1": -100}),
		"account@bob":   acct(1100, map[string]int64{"1": 100, "2": 0}),
		"account@carol": acct(1000, map[string]int64{"2": 0}),
	}}
	calls := map[string]int{}
	for _, t := range issued {
		b, _ := json.Marshal(t)
		calls[string(b)] = 1
	}
	return Observed{Driver: d, Accounts: accounts, Transfers: &immortal.DurableState{}, TransferCalls: calls, Results: map[int64]int{1: 1, 2: 1, 3: 1}}
}

func TestEvaluateHonestRun(t *testing.T) {
	r := Evaluate(honest())
	if !r.OK || len(r.Problems) != 0 || r.TotalBefore != 3000 || r.TotalAfter != 3000 {
		t.Fatalf("an honest run fails the checks: %+v", r)
	}
	if r.Outcomes[OutcomeDone] != 1 || r.Outcomes[OutcomeRefunded] != 1 || r.Outcomes[OutcomeInsufficient] != 1 {
		t.Errorf("outcomes %v", r.Outcomes)
	}
}

// TestEvaluateFindsEachProblem breaks one thing at a time: each must fail
// its own check, and only the report's OK with it.
func TestEvaluateFindsEachProblem(t *testing.T) {
	for _, tc := range []struct {
		name   string
		break_ func(o *Observed)
		check  func(c Checks) bool // the check that must fail
		says   string
	}{
		{"money created", func(o *Observed) {
			b, _ := json.Marshal(Account{Balance: 1001, Ledger: map[string]int64{"2": 0}})
			o.Accounts.Entities["account@carol"].State = b
		}, func(c Checks) bool { return c.MoneyConserved }, "hold 3001"},
		{"lock left held", func(o *Observed) { o.Accounts.Entities["account@bob"].LockedBy = "demo-transfers/o2" }, func(c Checks) bool { return c.NoLockHeld }, "locked by demo-transfers/o2"},
		{"operation queued", func(o *Observed) {
			o.Accounts.Entities["account@bob"].Queue = []*immortal.EntityMessage{{Kind: "op", Op: "credit"}}
		}, func(c Checks) bool { return c.NoLockHeld }, "1 operations queued"},
		{"transfer in flight", func(o *Observed) {
			o.Transfers.Orchestrations = map[string]*immortal.OrchestrationState{"o9": {Name: "Transfer"}}
		}, func(c Checks) bool { return c.NoLockHeld }, "1 transfers still in flight"},
		{"a call logged twice", func(o *Observed) {
			for k := range o.TransferCalls {
				o.TransferCalls[k] = 2
				break
			}
		}, func(c Checks) bool { return c.OneOutcomeEach }, "logged 2 times"},
		{"an outcome twice", func(o *Observed) { o.Results[2] = 2 }, func(c Checks) bool { return c.OneOutcomeEach }, "2 results for call 2"},
		{"an outcome missing", func(o *Observed) { delete(o.Driver.Outcomes, "3") }, func(c Checks) bool { return c.OneOutcomeEach }, "transfer 3 has no outcome"},
		{"ledger disagrees", func(o *Observed) {
			o.Driver.Outcomes["1"] = Outcome{ID: "1", Outcome: OutcomeRefunded}
		}, func(c Checks) bool { return c.LedgersMatch }, "transfer 1 (refunded, 100 from alice to bob): the ledgers say -100 and +100"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := honest()
			tc.break_(&o)
			r := Evaluate(o)
			if r.OK || tc.check(r.Checks) {
				t.Errorf("not caught: ok %v, checks %+v", r.OK, r.Checks)
			}
			if all := strings.Join(r.Problems, "; "); !strings.Contains(all, tc.says) {
				t.Errorf("problems %q do not say %q", all, tc.says)
			}
		})
	}
}
