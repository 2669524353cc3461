package immortal

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/ambr-dev/ambr/engine/layout"
	"github.com/ambr-dev/ambr/engine/vfs"
	"github.com/ambr-dev/ambr/logfmt"
	"github.com/ambr-dev/ambr/logfmt/logview"
)

// Reading what this binding left in an instance directory, for tools and
// tests. Both read the files only (safe while the instance runs).

// NewestState decodes into v the app state held by the newest valid
// checkpoint of the instance in dir (the "state" of this binding's
// checkpoint). It reports false when there is none to read.
func NewestState(dir string, v any) bool {
	in, err := layout.Open(vfs.Default(), dir)
	if err != nil {
		return false
	}
	nums, _ := in.Checkpoints()
	for k := len(nums) - 1; k >= 0; k-- {
		if ck, err := in.ReadCheckpoint(nums[k]); err == nil {
			var wrap struct {
				State json.RawMessage `json:"state"`
			}
			if json.Unmarshal(ck.State, &wrap) == nil && json.Unmarshal(wrap.State, v) == nil {
				return true
			}
		}
	}
	return false
}

// DecodeDurable returns the orchestrations, timers and entities a
// checkpoint of this binding holds (its "binding.durable"), nil if it holds
// none. For tools and tests: they read it, the binding owns it.
func DecodeDurable(checkpoint []byte) (*DurableState, error) {
	var ck checkpointJSON
	if err := unmarshalCheckpoint(checkpoint, &ck); err != nil {
		return nil, fmt.Errorf("immortal: not a checkpoint of this binding: %w", err)
	}
	return ck.Binding.Durable, nil
}

// NewestDurable returns what the newest valid checkpoint of the instance in
// dir holds of orchestrations, timers and entities, decoding its state into
// v too unless v is nil. It reports false when there is no checkpoint to
// read.
func NewestDurable(dir string, v any) (*DurableState, bool) {
	in, err := layout.Open(vfs.Default(), dir)
	if err != nil {
		return nil, false
	}
	nums, _ := in.Checkpoints()
	for k := len(nums) - 1; k >= 0; k-- {
		ck, err := in.ReadCheckpoint(nums[k])
		if err != nil {
			continue
		}
		var wrap checkpointJSON
		if unmarshalCheckpoint(ck.State, &wrap) != nil || (v != nil && json.Unmarshal(wrap.State, v) != nil) {
			continue
		}
		d := wrap.Binding.Durable
		if d == nil {
			d = &DurableState{}
		}
		return d, true
	}
	return nil, false
}

// LoggedCalls counts the requests for method in the log of the instance in
// dir, by sender and by payload: calls[sender] and payloads[payload].
func LoggedCalls(dir, method string) (calls map[string]int, payloads map[string]int, err error) {
	calls, payloads = map[string]int{}, map[string]int{}
	err = eachLoggedRPC(dir, func(sender string, rpc logfmt.RPC) {
		if name, result, payload, ok := DecodeArgs(rpc.Args, rpc.Reserved); ok && !result && name == method {
			calls[sender]++
			payloads[string(payload)]++
		}
	})
	if err != nil {
		return nil, nil, err
	}
	return calls, payloads, nil
}

// LoggedResults counts the results of calls in the log of the instance in
// dir, by call id: exactly one each, when every call was answered once.
func LoggedResults(dir string) (map[int64]int, error) {
	results := map[int64]int{}
	err := eachLoggedRPC(dir, func(_ string, rpc logfmt.RPC) {
		if rpc.Reserved != ReservedResult {
			return
		}
		if e, err := ParseEnvelope(rpc.Args); err == nil {
			results[e.CallID]++
		}
	})
	if err != nil {
		return nil, err
	}
	return results, nil
}

// eachLoggedRPC calls fn with every RPC logged by the instance in dir and
// the instance that sent it.
func eachLoggedRPC(dir string, fn func(sender string, rpc logfmt.RPC)) error {
	in, err := layout.Open(vfs.Default(), dir)
	if err != nil {
		return err
	}
	lr, err := in.NewLogReader(0)
	if err != nil {
		return err
	}
	defer lr.Close()
	for {
		r, err := lr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		src, left := 0, uint32(0)
		if len(r.Sources) > 0 {
			left = r.Sources[0].Count
		}
		it := logfmt.NewMessageIter(r.Messages)
		for m, ok := it.Next(); ok; m, ok = it.Next() {
			for left == 0 && src+1 < len(r.Sources) {
				src++
				left = r.Sources[src].Count
			}
			left--
			if m.Type != logfmt.TypeRPC {
				continue
			}
			rpc, _ := logfmt.ParseRPC(m.Data)
			fn(r.Sources[src].Peer, rpc)
		}
	}
}

// ViewEnvelope reads the binding's envelope for logview: the method, or for
// a result the number of the call it answers and whether it is an error.
// The tools (ambr log, the TUI) decode records with it.
func ViewEnvelope(args []byte, reserved byte) (logview.Envelope, bool) {
	e, err := ParseEnvelope(args)
	if err != nil {
		return logview.Envelope{}, false
	}
	return logview.Envelope{Method: e.Method, Result: reserved == ReservedResult, CallID: e.CallID,
		Failed: e.Flags&FlagError != 0, Payload: e.Payload}, true
}

// SplitDurable takes the orchestrations, timers and entities (the
// "durable" part) out of a checkpoint's binding JSON, for the tools to show
// on their own: durable is nil when the binding holds none, and rest is
// then binding unchanged.
func SplitDurable(binding json.RawMessage) (durable, rest json.RawMessage) {
	var m map[string]json.RawMessage
	if json.Unmarshal(binding, &m) != nil {
		return nil, binding
	}
	d, ok := m["durable"]
	if !ok || string(d) == "null" {
		return nil, binding
	}
	delete(m, "durable")
	rest, err := json.Marshal(m)
	if err != nil {
		return nil, binding
	}
	return d, rest
}
