package accum

import (
	"encoding/json"
	"io"

	"github.com/ambr-dev/ambr/engine/immortal"
	"github.com/ambr-dev/ambr/engine/layout"
	"github.com/ambr-dev/ambr/engine/vfs"
	"github.com/ambr-dev/ambr/logfmt"
)

// NewestState reads the accumulator state held by the newest valid
// checkpoint of the instance in dir (read-only; safe while it runs).
func NewestState(dir string) (State, bool) {
	in, err := layout.Open(vfs.Default(), dir)
	if err != nil {
		return State{}, false
	}
	nums, _ := in.Checkpoints()
	for i := len(nums) - 1; i >= 0; i-- {
		if ck, err := in.ReadCheckpoint(nums[i]); err == nil {
			var wrap struct {
				State State `json:"state"`
			}
			if json.Unmarshal(ck.State, &wrap) == nil {
				return wrap.State, true
			}
		}
	}
	return State{}, false
}

// LoggedAdds counts how often each add (by its JSON argument) is in the log
// of the instance in dir: a correct run logs each of 1..target once.
func LoggedAdds(dir string) (map[string]int, error) {
	in, err := layout.Open(vfs.Default(), dir)
	if err != nil {
		return nil, err
	}
	lr, err := in.NewLogReader(0)
	if err != nil {
		return nil, err
	}
	defer lr.Close()
	adds := map[string]int{}
	for {
		r, err := lr.Next()
		if err == io.EOF {
			return adds, nil
		}
		if err != nil {
			return nil, err
		}
		it := logfmt.NewMessageIter(r.Messages)
		for m, ok := it.Next(); ok; m, ok = it.Next() {
			if m.Type != logfmt.TypeRPC {
				continue
			}
			rpc, _ := logfmt.ParseRPC(m.Data)
			if method, _, payload, ok := immortal.DecodeArgs(rpc.Args, rpc.Reserved); ok && method == "add" {
				adds[string(payload)]++
			}
		}
	}
}
