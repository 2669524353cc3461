package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/ambr-dev/ambr/samples/bank/bank"
)

var (
	bankTransfersFlag = flag.Int("bank-transfers", 60, "bank kill loop: transfers (the demo's default is 500)")
	bankKillsFlag     = flag.Int("bank-kills", 4, "bank kill loop: SIGKILLs of apps and whole ambr runs (the demo's default is 12)")
)

// TestBankDemoKillLoop runs `ambr demo bank --json` as a user would: three
// immortals under real `ambr run`s, SIGKILLed at random moments and
// restarted, then checked from their logs and checkpoints. The report must
// say every check holds, with numbers that add up, and the exit status must
// be 0. Long runs: -bank-transfers 500 -bank-kills 30.
func TestBankDemoKillLoop(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real processes for several seconds; go test without -short runs it")
	}
	ambr, _ := binaries(t)
	home := t.TempDir()
	seed := time.Now().UnixNano()
	t.Logf("seed %d, %d transfers, %d kills", seed, *bankTransfersFlag, *bankKillsFlag)
	cmd := exec.Command(ambr, "--home", home, "demo", "bank", "--json", "--seed", strconv.FormatInt(seed, 10),
		"--transfers", strconv.Itoa(*bankTransfersFlag), "--kills", strconv.Itoa(*bankKillsFlag), "--parallel", "6", "--accounts", "3")
	cmd.Dir = "../.." // the demo builds ./samples/bank/...
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	t.Logf("progress:\n%s", stderr.String())
	if err != nil {
		t.Fatalf("ambr demo bank: %v\nreport: %s", err, stdout.String())
	}
	var r bank.Report
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatalf("the report is not JSON: %v\n%s", err, stdout.String())
	}
	n := *bankTransfersFlag
	if !r.OK || r.Transfers != n || r.Kills != *bankKillsFlag || r.Accounts != 3 {
		t.Errorf("report: ok %v, %d transfers, %d kills, %d accounts; want ok, %d, %d, 3\n%s", r.OK, r.Transfers, r.Kills, r.Accounts, n, *bankKillsFlag, stdout.String())
	}
	if r.TotalBefore != 3*bank.InitialBalance || r.TotalAfter != r.TotalBefore {
		t.Errorf("money: %d before, %d after, want %d both", r.TotalBefore, r.TotalAfter, 3*bank.InitialBalance)
	}
	if r.LoggedTransfers != n || r.LoggedOutcomes != n || r.LocksHeld != 0 || r.QueuedOps != 0 || r.InFlight != 0 {
		t.Errorf("logged %d transfers and %d outcomes (want %d each); %d locks held, %d queued, %d in flight (want 0)", r.LoggedTransfers, r.LoggedOutcomes, n, r.LocksHeld, r.QueuedOps, r.InFlight)
	}
	total := 0
	for _, c := range r.Outcomes {
		total += c
	}
	if total != n || r.Outcomes[bank.OutcomeDone] == 0 {
		t.Errorf("outcomes %v: want %d in all, some done", r.Outcomes, n)
	}
	if c := r.Checks; !c.MoneyConserved || !c.OneOutcomeEach || !c.NoLockHeld || !c.LedgersMatch {
		t.Errorf("checks %+v, want all true", c)
	}
}
