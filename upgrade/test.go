package upgrade

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/ambr-dev/ambr/engine/immortal"
	"github.com/ambr-dev/ambr/engine/layout"
	"github.com/ambr-dev/ambr/engine/vfs"
	"github.com/ambr-dev/ambr/retro"
	"github.com/ambr-dev/ambr/timetravel"
)

// TestReport is what an upgrade test found: the conversion at the
// checkpoint the candidate takes over at, and the retro-test of the
// history after it on the candidate's new code (messages compared with
// what the recorded build sends; states with what the candidate's
// conversion makes of the recorded state at each comparison point).
type TestReport struct {
	*retro.Report
	Conversion *Conversion `json:"conversion,omitempty"`
}

// Conversion is the candidate's conversion of the recorded state at the
// checkpoint it takes over at, next to the old state, and how the state
// the candidate then reaches by replay compares.
type Conversion struct {
	// Checkpoint is where the candidate takes over: the state after record
	// Seq.
	Checkpoint uint64 `json:"checkpoint"`
	Seq        int64  `json:"seq"`
	// OldType and NewType are the state types the checkpoints name.
	OldType string `json:"old_type,omitempty"`
	NewType string `json:"new_type,omitempty"`
	// OldState is the recorded state there, ConvertedState what the
	// candidate converted it to (the app's part, without the binding's
	// bookkeeping); Diff the structural difference between them.
	OldState       json.RawMessage     `json:"old_state"`
	ConvertedState json.RawMessage     `json:"converted_state"`
	Diff           []timetravel.Change `json:"diff"`
	// Comparison: after replaying the history on its new code from the
	// converted state, the candidate's state is compared (StatesCompared
	// times, the last after record Until) with its conversion of the
	// recorded state at the same point. They match unless the conversion
	// loses or changes something the new code goes on to use; FirstDiff is
	// the first point where they differ.
	StatesCompared int              `json:"states_compared"`
	Matches        bool             `json:"replayed_state_matches"`
	FirstDiff      *retro.StateDiff `json:"first_diff,omitempty"`
}

// ConversionError says the candidate could not convert the recorded state
// at all: it cannot take over the instance.
type ConversionError struct {
	Checkpoint uint64
	Err        error
}

func (e *ConversionError) Error() string {
	return fmt.Sprintf("upgrade: the candidate cannot take over the state of checkpoint %d: %v", e.Checkpoint, e.Err)
}

func (e *ConversionError) Unwrap() error { return e.Err }

// Failed reports whether the new version cannot take over as it is: it
// sends something else than the recorded build, its state after replay
// is not what its conversion makes of the recorded one, or the history
// is not reproduced.
func (r *TestReport) Failed() bool { return r.Report.Diverged() }

// Test runs an upgrade test of the instance in opts.Dir against
// opts.Candidate without touching the instance: the candidate takes over
// at opts.FromCheckpoint (default: the oldest checkpoint of the current
// version, where its history begins), converts the state (UpgradeService),
// and replays the history after it on its new code. opts.UpgradeTest is
// set for the caller.
func Test(ctx context.Context, opts retro.Options) (*TestReport, error) {
	opts.UpgradeTest = true
	in, err := layout.Open(vfs.Default(), opts.Dir)
	if err != nil {
		return nil, err
	}
	if opts.FromCheckpoint == 0 {
		opts.FromCheckpoint = retro.CurrentVersionCheckpoint(in)
		if opts.FromCheckpoint == 0 {
			return nil, fmt.Errorf("%s has no valid checkpoint for the candidate to take over", in.Dir)
		}
	}
	ck, err := in.ReadCheckpoint(opts.FromCheckpoint)
	if err != nil {
		nums, _ := in.Checkpoints()
		return nil, fmt.Errorf("%w: checkpoint %d: %v (checkpoints present: %v)", timetravel.ErrBadPoint, opts.FromCheckpoint, err, nums)
	}
	conv, err := retro.Convert(ctx, opts.Candidate, in.Manifest.Instance, ck.State, opts.Stderr)
	if err != nil {
		return nil, &ConversionError{Checkpoint: ck.Number, Err: err}
	}
	old, converted := retro.AppState(ck.State), retro.AppState(conv)
	c := &Conversion{Checkpoint: ck.Number, Seq: ck.NextSeq - 1,
		OldType: retro.StateType(ck.State), NewType: retro.StateType(conv),
		OldState: jsonOrString(old), ConvertedState: jsonOrString(converted),
		Diff: timetravel.Diff(old, converted)}
	rep, err := retro.Run(ctx, opts)
	if err != nil {
		return nil, err
	}
	c.StatesCompared, c.Matches, c.FirstDiff = rep.StatesCompared, rep.StatesDiffering == 0, rep.FirstStateDiff
	return &TestReport{Report: rep, Conversion: c}, nil
}

// jsonOrString keeps a JSON state as it is and quotes anything else.
func jsonOrString(b []byte) json.RawMessage {
	if b = immortal.CheckpointJSON(b); json.Valid(b) {
		return b
	}
	q, _ := json.Marshal(string(b))
	return q
}
