package immortal_test

import (
	"time"

	"github.com/ambr-dev/ambr/engine/immortal"
)

// Account is an entity's state in the example below.
type Account struct {
	Balance int64 `json:"balance"`
}

// Transfer is the example orchestration's input.
type Transfer struct {
	From, To string
	Amount   int64
}

var ErrInsufficientFunds = immortal.DeclareError("example.insufficient_funds", "insufficient funds")

// A transfer between two account entities: an orchestration locks both,
// debits with a timeout, credits, and answers its caller when it is done.
// The README's "Writing an orchestration" shows this code.
func ExampleOrchestrate() {
	app := immortal.New(func() struct{} { return struct{}{} })
	acct := immortal.NewEntity(app, "account", func() Account { return Account{Balance: 1000} })
	immortal.HandleOp(acct, "debit", func(ec *immortal.EntityCtx, a *Account, n int64) (int64, error) {
		if a.Balance < n {
			return a.Balance, ErrInsufficientFunds // keeps its code: errors.Is works at the caller
		}
		a.Balance -= n // kept only if the operation succeeds
		return a.Balance, nil
	})
	immortal.HandleOp(acct, "credit", func(ec *immortal.EntityCtx, a *Account, n int64) (int64, error) {
		a.Balance += n
		return a.Balance, nil
	})
	immortal.Orchestrate(app, "Transfer", func(o *immortal.Orch, t Transfer) (string, error) {
		from, to := acct.ID("bank", t.From), acct.ID("bank", t.To)
		cs, err := o.Lock(from, to) // one sorted order, a chained request: no deadlock
		if err != nil {
			return "", err
		}
		defer cs.Unlock() // released on return, error and panic anyway
		debit := immortal.CallEntityAsync[int64](o, from, "debit", t.Amount, immortal.WithTimeout(2*time.Second))
		if _, err := debit.Await(); err != nil { // ErrTimeout, ErrInsufficientFunds, …
			return "", err
		}
		immortal.CallEntityAsync[int64](o, to, "credit", t.Amount).Await()
		return "done", nil // the reply to the caller, sent now
	})
	_ = app // immortal.Main(app) runs it under `ambr run`
}
