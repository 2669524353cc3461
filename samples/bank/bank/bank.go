// Package bank is the sample behind samples/bank and `ambr demo bank`:
// three immortals, written with orchestrations, entities and critical
// sections.
//
//	driver ──Transfer──▶ transfers ──lock, balance, debit, credit, undo──▶ accounts
//	   ◀────outcome────── (orchestrations)                                (entities)
//
// accounts hosts one entity per account ("account", key = the owner).
// transfers runs one orchestration per transfer: it locks both accounts
// (one critical section, so two transfers never interleave on an account),
// reads the balance, debits and credits, each call with a timeout; if the
// credit fails or times out it undoes both (the refund path). driver makes
// --count random transfers among --accounts accounts, --parallel at a time
// so that the locks contend, and keeps each outcome. All configuration is
// the driver's (logged) init args, carried on in each transfer.
//
// Whatever crashes, money is conserved, each transfer has exactly one
// outcome, and no lock is left held: Check reads that from the instances'
// logs and checkpoints.
package bank

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/ambr-dev/ambr/engine/immortal"
)

// InitialBalance is every account's balance before the first transfer.
const InitialBalance = 1000

// ErrInsufficientFunds is a declared error: it crosses calls with its
// code, so errors.Is finds it at the caller.
var ErrInsufficientFunds = immortal.DeclareError("bank.insufficient_funds", "insufficient funds")

// Outcomes of a transfer.
const (
	OutcomeDone         = "done"         // the money moved
	OutcomeInsufficient = "insufficient" // the source had too little; nothing moved
	OutcomeRefunded     = "refunded"     // debited, the credit failed or timed out; both undone
	OutcomeTimedOut     = "timed_out"    // the balance or the debit timed out; undone, nothing moved
)

// Account is an account entity's state. Ledger holds, per transfer, what it
// moved in (+) or out (−) after undos: the demo checks it against the
// outcomes.
type Account struct {
	Balance int64            `json:"balance"`
	Ledger  map[string]int64 `json:"ledger"`
}

// Move is the argument of debit, credit and undo.
type Move struct {
	Transfer string `json:"transfer"`
	Amount   int64  `json:"amount,omitempty"`
}

// AccountName is the entity type of accounts.
const AccountName = "account"

// AccountID returns the entity of the account key hosted by instance.
func AccountID(instance, key string) immortal.EntityID {
	return immortal.EntityID{Instance: instance, Name: AccountName, Key: key}
}

// AuditState is the state of accounts and transfers: the number of
// transfers the driver said were finished when it asked for the audit
// (a checkpoint then holds everything the checks read).
type AuditState struct {
	Audited int `json:"audited"`
}

// NewAccounts returns the accounts app.
func NewAccounts() *immortal.App[AuditState] {
	app := immortal.New(func() AuditState { return AuditState{} })
	acct := immortal.NewEntity(app, AccountName, func() Account {
		return Account{Balance: InitialBalance, Ledger: map[string]int64{}}
	})
	immortal.HandleOp(acct, "balance", func(ec *immortal.EntityCtx, a *Account, _ struct{}) (int64, error) {
		return a.Balance, nil
	})
	immortal.HandleOp(acct, "debit", func(ec *immortal.EntityCtx, a *Account, m Move) (int64, error) {
		if a.Balance < m.Amount {
			return a.Balance, fmt.Errorf("%s has %d, transfer %s wants %d: %w", ec.ID().Key, a.Balance, m.Transfer, m.Amount, ErrInsufficientFunds)
		}
		a.Balance -= m.Amount
		a.Ledger[m.Transfer] -= m.Amount
		return a.Balance, nil
	})
	immortal.HandleOp(acct, "credit", func(ec *immortal.EntityCtx, a *Account, m Move) (int64, error) {
		a.Balance += m.Amount
		a.Ledger[m.Transfer] += m.Amount
		return a.Balance, nil
	})
	immortal.HandleOp(acct, "undo", func(ec *immortal.EntityCtx, a *Account, m Move) (int64, error) {
		a.Balance -= a.Ledger[m.Transfer]
		a.Ledger[m.Transfer] = 0
		return a.Balance, nil
	})
	immortal.Handle(app, "audit", func(ctx *immortal.Ctx, s *AuditState, n int) (struct{}, error) {
		s.Audited = n
		ctx.RequestCheckpoint()
		return struct{}{}, nil
	})
	return app
}

// Transfer is a transfer's arguments. It names the accounts' instance and
// the timeout too, so that the transfers app takes its configuration from
// its logged input: a replay of its log (ambr replay, retro-test) needs no
// flags to do exactly what the live run did.
type Transfer struct {
	ID       string        `json:"id"`
	From     string        `json:"from"`
	To       string        `json:"to"`
	Amount   int64         `json:"amount"`
	Accounts string        `json:"accounts"`
	Timeout  time.Duration `json:"timeout"`
}

// Outcome is what a transfer orchestration returns.
type Outcome struct {
	ID      string `json:"id"`
	Outcome string `json:"outcome"`
	Detail  string `json:"detail,omitempty"`
}

// NewTransfers returns the transfers app: Transfer orchestrations over the
// accounts the transfer names, each call with the transfer's timeout.
func NewTransfers() *immortal.App[AuditState] {
	app := immortal.New(func() AuditState { return AuditState{} })
	immortal.Orchestrate(app, "Transfer", func(o *immortal.Orch, t Transfer) (Outcome, error) {
		if t.From == t.To || t.Amount <= 0 || t.Accounts == "" || t.Timeout <= 0 {
			return Outcome{}, fmt.Errorf("transfer %s: from %q to %q of %d at %q with timeout %v: want two accounts, an amount > 0, the accounts' instance and a timeout", t.ID, t.From, t.To, t.Amount, t.Accounts, t.Timeout)
		}
		timeout := t.Timeout
		from, to := AccountID(t.Accounts, t.From), AccountID(t.Accounts, t.To)
		cs, err := o.Lock(from, to)
		if err != nil {
			return Outcome{}, err
		}
		defer cs.Unlock() // also released without it, on every way out
		done := func(outcome string, err error) (Outcome, error) {
			r := Outcome{ID: t.ID, Outcome: outcome}
			if err != nil {
				r.Detail = err.Error()
			}
			return r, nil
		}
		call := func(acct immortal.EntityID, op string, limit bool) error {
			var opts []immortal.CallOption
			if limit {
				opts = append(opts, immortal.WithTimeout(timeout))
			}
			_, err := immortal.CallEntityAsync[int64](o, acct, op, Move{Transfer: t.ID, Amount: t.Amount}, opts...).Await()
			return err
		}
		balance, err := immortal.CallEntityAsync[int64](o, from, "balance", nil, immortal.WithTimeout(timeout)).Await()
		if err != nil {
			return done(OutcomeTimedOut, err)
		}
		if balance < t.Amount {
			return done(OutcomeInsufficient, nil)
		}
		if err := call(from, "debit", true); err != nil {
			if errors.Is(err, ErrInsufficientFunds) {
				return done(OutcomeInsufficient, err)
			}
			// Timed out: the debit may still run (messages are never
			// lost); an undo after it, in order, takes it back.
			if uerr := call(from, "undo", false); uerr != nil {
				return Outcome{}, uerr
			}
			return done(OutcomeTimedOut, err)
		}
		if err := call(to, "credit", true); err != nil {
			// The refund path: take back the credit if it runs after all,
			// and the debit.
			if errors.Is(err, immortal.ErrTimeout) {
				if uerr := call(to, "undo", false); uerr != nil {
					return Outcome{}, uerr
				}
			}
			if uerr := call(from, "undo", false); uerr != nil {
				return Outcome{}, uerr
			}
			return done(OutcomeRefunded, err)
		}
		return done(OutcomeDone, nil)
	})
	// audit comes from the driver when it has every outcome. It goes on to
	// accounts from here, after every release this instance sent, so the
	// accounts' checkpoint it asks for holds no lock of a finished transfer.
	immortal.Handle(app, "audit", func(ctx *immortal.Ctx, s *AuditState, a Audit) (struct{}, error) {
		s.Audited = a.Transfers
		ctx.RequestCheckpoint()
		return struct{}{}, ctx.Fork(a.Accounts, "audit", a.Transfers)
	})
	return app
}

// Audit is what the driver sends the transfers instance when it has every
// outcome.
type Audit struct {
	Transfers int    `json:"transfers"`
	Accounts  string `json:"accounts"`
}

// DriverArgs start the driver.
type DriverArgs struct {
	Transfers    int           `json:"transfers"`
	Accounts     int           `json:"accounts"`
	Parallel     int           `json:"parallel"`
	TransfersApp string        `json:"transfers_instance"`
	AccountsApp  string        `json:"accounts_instance"`
	Timeout      time.Duration `json:"timeout"`
	MaxAmount    int64         `json:"max_amount"`
}

// DriverState is the driver's state: every transfer it made and its
// outcome.
type DriverState struct {
	Args     DriverArgs         `json:"args"`
	Issued   []Transfer         `json:"issued"`
	Outcomes map[string]Outcome `json:"outcomes"`
	InFlight int                `json:"in_flight"`
	Done     bool               `json:"done"`
	Failures int                `json:"failures"` // calls that failed outright (not an outcome)
}

// AccountKeys returns the keys of the first n accounts.
func AccountKeys(n int) []string {
	names := []string{"alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy"}
	keys := make([]string, n)
	for i := range keys {
		if i < len(names) {
			keys[i] = names[i]
		} else {
			keys[i] = "acct" + strconv.Itoa(i)
		}
	}
	return keys
}

// NewDriver returns the driver app; it prints progress to out when live.
func NewDriver(args DriverArgs, out io.Writer) *immortal.App[DriverState] {
	app := immortal.New(func() DriverState { return DriverState{Outcomes: map[string]Outcome{}, Issued: []Transfer{}} }, immortal.WithInitArgs(args))
	next := func(ctx *immortal.Ctx, s *DriverState) error {
		for s.InFlight < s.Args.Parallel && len(s.Issued) < s.Args.Transfers {
			keys := AccountKeys(s.Args.Accounts)
			rng := ctx.Rand()
			from := rng.IntN(len(keys))
			to := (from + 1 + rng.IntN(len(keys)-1)) % len(keys)
			t := Transfer{ID: strconv.Itoa(len(s.Issued) + 1), From: keys[from], To: keys[to], Amount: 1 + rng.Int64N(s.Args.MaxAmount),
				Accounts: s.Args.AccountsApp, Timeout: s.Args.Timeout}
			if err := ctx.Call(s.Args.TransfersApp, "Transfer", t, "outcome", t.ID); err != nil {
				return err
			}
			s.Issued = append(s.Issued, t)
			s.InFlight++
		}
		return nil
	}
	app.OnFirstStart(func(ctx *immortal.Ctx, s *DriverState, raw []byte) error {
		if err := ctx.Unmarshal(raw, &s.Args); err != nil {
			return err
		}
		a := s.Args
		if a.Accounts < 2 || a.Transfers < 1 || a.Parallel < 1 || a.MaxAmount < 1 || a.TransfersApp == "" || a.AccountsApp == "" || a.Timeout <= 0 {
			return fmt.Errorf("bank driver: want ≥ 2 accounts, ≥ 1 transfer, ≥ 1 in parallel, a max amount ≥ 1, the transfers' and accounts' instances and a timeout; got %+v", a)
		}
		if !ctx.Replaying() {
			fmt.Fprintf(out, "driver: %d transfers among %d accounts, %d at a time\n", a.Transfers, a.Accounts, a.Parallel)
		}
		return next(ctx, s)
	})
	immortal.HandleResult(app, "outcome", func(ctx *immortal.Ctx, s *DriverState, r Outcome, callErr error, note []byte) error {
		var id string
		if err := ctx.Unmarshal(note, &id); err != nil {
			return err
		}
		s.InFlight--
		if callErr != nil {
			s.Failures++
			r = Outcome{ID: id, Outcome: "failed", Detail: callErr.Error()}
		}
		s.Outcomes[id] = r
		n := len(s.Outcomes)
		if !ctx.Replaying() && (n%50 == 0 || n == s.Args.Transfers) {
			fmt.Fprintf(out, "driver: %d of %d transfers have an outcome\n", n, s.Args.Transfers)
		}
		if n == s.Args.Transfers && !s.Done {
			s.Done = true
			ctx.RequestCheckpoint()
			return ctx.Fork(s.Args.TransfersApp, "audit", Audit{Transfers: n, Accounts: s.Args.AccountsApp})
		}
		return next(ctx, s)
	})
	return app
}
