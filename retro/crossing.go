package retro

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/ambr-dev/ambr/engine/immortal"
	"github.com/ambr-dev/ambr/engine/layout"
	"github.com/ambr-dev/ambr/logfmt"
	"github.com/ambr-dev/ambr/timetravel"
)

// nextRange returns the next build range the recorded side has to go on
// with, from record seq on (nil: none).
func (t *tester) nextRange(seq int64) *timetravel.BuildRange {
	for i := range t.ranges {
		if r := &t.ranges[i]; r.First >= seq && r.First > t.crossedAt {
			return r
		}
	}
	return nil
}

// cross moves the recorded side to the build of range r, at its first
// record: that build starts from the checkpoint it started from in the
// live run. When the state changes type there (an upgrade), the candidate
// is told to upgrade too (UpgradeService), and its converted state is
// compared with the recorded one. It returns the states and the output
// check to go on with.
func (t *tester) cross(r *timetravel.BuildRange, expState, actState []byte) ([]byte, []byte, *timetravel.OutputCheck, error) {
	ck, err := t.in.ReadCheckpoint(r.Checkpoint)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("retro: the build that ran records from %d on (%s) starts from checkpoint %d: %w", r.First, r.Source, r.Checkpoint, err)
	}
	// An upgrade: the version moved (MANIFESTs record it per build), or the
	// state changed type (older MANIFESTs).
	from, to := StateType(expState), StateType(ck.State)
	upgrade := from != to || r.Version != t.version
	t.version = r.Version
	if upgrade && t.opts.UpgradeTest {
		return nil, nil, nil, fmt.Errorf("%w: the history from checkpoint %d crosses the upgrade at record %d (state %s → %s); an upgrade test takes over from the current version's state: use --from-checkpoint %d or later",
			timetravel.ErrBadPoint, t.ck.Number, r.First, orUnnamed(from), orUnnamed(to), r.Checkpoint)
	}
	t.crossedAt = r.First
	t.recorded = r.Exe
	if t.exp != nil {
		t.exp.Close()
	}
	name := t.in.Manifest.Instance
	if t.exp, err = timetravel.StartDriver(t.ctx, nil, t.recorded, name, nil, t.expW, t.expW); err != nil {
		return nil, nil, nil, fmt.Errorf("start the recorded build of records %d on (%s): %w", r.First, r.Exe, err)
	}
	if err := t.exp.LoadState(ck.State); err != nil {
		return nil, nil, nil, err
	}
	if t.again != nil { // the second run stops at a crossing
		t.again.Close()
		t.again = nil
	}
	c := Crossing{Seq: r.First, Checkpoint: r.Checkpoint, Recorded: r.Exe, Upgrade: upgrade}
	if upgrade {
		c.From, c.To = from, to
		if err := t.act.Control(logfmt.TypeUpgradeService); err != nil {
			return nil, nil, nil, err
		}
		st, _, err := t.act.Checkpoint(t.ctx)
		if err != nil {
			err = t.failed("the candidate", r.First-1, err, t.actOut, t.act)
			return nil, nil, nil, fmt.Errorf("the history upgrades at record %d (state %s → %s) and the candidate could not take the upgrade (a candidate for this history carries both versions, immortal.Upgrade; or retro-test it --until %d, or from checkpoint %d on): %w",
				r.First, orUnnamed(from), orUnnamed(to), r.First-1, r.Checkpoint, err)
		}
		actState = st
		t.rep.StatesCompared++
		if t.rep.compareStates(r.First-1, ck.State, actState) {
			t.stateDiffs = append(t.stateDiffs, r.First-1)
		}
	}
	t.rep.Crossings = append(t.rep.Crossings, c)
	return ck.State, actState, timetravel.NewOutputCheck(ck, name), nil
}

func orUnnamed(typ string) string {
	if typ == "" {
		return "(unnamed type)"
	}
	return typ
}

// convert asks a fresh run of the candidate what its conversion makes of a
// recorded state (Convert).
func (t *tester) convert(state []byte) ([]byte, error) {
	return Convert(t.ctx, t.opts.Candidate, t.in.Manifest.Instance, state, t.opts.Stderr)
}

// Convert starts the candidate, hands it state (a checkpoint of the old
// version), tells it to upgrade (UpgradeService) and returns the state it
// converted that to. The candidate must carry both versions (in the Go
// binding: immortal.Upgrade). stderr, if not nil, gets its output.
func Convert(ctx context.Context, candidate, instance string, state []byte, stderr io.Writer) ([]byte, error) {
	out := &tail{max: 2048}
	var w io.Writer = out
	if stderr != nil {
		w = io.MultiWriter(out, stderr)
	}
	d, err := timetravel.StartDriver(ctx, nil, candidate, instance, nil, w, w)
	if err != nil {
		return nil, fmt.Errorf("start the candidate: %w", err)
	}
	defer d.Close()
	fail := func(err error) error {
		d.WaitExit(2e9)
		if said := out.String(); said != "" {
			return fmt.Errorf("the candidate could not convert the state: %w; it said: %s", err, said)
		}
		return fmt.Errorf("the candidate could not convert the state: %w", err)
	}
	if err := d.LoadState(state); err != nil {
		return nil, fail(err)
	}
	if err := d.Control(logfmt.TypeUpgradeService); err != nil {
		return nil, fail(err)
	}
	st, _, err := d.Checkpoint(ctx)
	if err != nil {
		return nil, fail(err)
	}
	return st, nil
}

// StateType is the state's type a Go binding's checkpoint names
// (binding.state_type; "" for other bindings and older checkpoints).
func StateType(checkpoint []byte) string {
	var w struct {
		Binding struct {
			StateType string `json:"state_type"`
		} `json:"binding"`
	}
	if json.Unmarshal(immortal.CheckpointJSON(checkpoint), &w) != nil {
		return ""
	}
	return w.Binding.StateType
}

// AppState is the app's part of a checkpoint's state, as retro compares
// it: the Go binding's state (with the entities the instance hosts, if
// any), without the binding's bookkeeping; other bindings' states whole.
func AppState(checkpoint []byte) []byte {
	b, _ := appState(checkpoint)
	return b
}

// CurrentVersionCheckpoint is the oldest checkpoint whose state has the
// type of the newest one's: where the history of the current version
// begins (the checkpoint its upgrade wrote), 0 if there is none to read.
func CurrentVersionCheckpoint(in *layout.Instance) uint64 {
	nums, err := in.Checkpoints()
	if err != nil || len(nums) == 0 {
		return 0
	}
	var newest string
	found := false
	for i := len(nums) - 1; i >= 0; i-- {
		if ck, err := in.ReadCheckpoint(nums[i]); err == nil {
			newest, found = StateType(ck.State), true
			break
		}
	}
	if !found {
		return 0
	}
	var first uint64
	for i := len(nums) - 1; i >= 0; i-- {
		ck, err := in.ReadCheckpoint(nums[i])
		if err != nil {
			continue
		}
		if StateType(ck.State) != newest {
			break
		}
		first = nums[i]
	}
	return first
}
