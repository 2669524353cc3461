package main

import (
	"encoding/json"
	"io"

	"github.com/ambr-dev/ambr/engine/immortal"
	"github.com/ambr-dev/ambr/engine/layout"
	"github.com/ambr-dev/ambr/logfmt"
)

// newestState decodes into v the app state held by the newest valid
// checkpoint of the instance in dir (a Go-binding checkpoint: the state is
// under "state"). Read-only, safe while the instance runs.
func newestState(dir string, v any) bool {
	in, err := layout.Open(vfsDefault(), dir)
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

// loggedCalls counts the RPCs of a method in an instance's log, by sender.
func loggedCalls(dir, method string) (map[string]int, error) {
	in, err := layout.Open(vfsDefault(), dir)
	if err != nil {
		return nil, err
	}
	lr, err := in.NewLogReader(0)
	if err != nil {
		return nil, err
	}
	defer lr.Close()
	calls := map[string]int{}
	for {
		r, err := lr.Next()
		if err == io.EOF {
			return calls, nil
		}
		if err != nil {
			return nil, err
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
			if name, _, _, ok := immortal.DecodeArgs(rpc.Args, rpc.Reserved); ok && name == method {
				calls[r.Sources[src].Peer]++
			}
		}
	}
}
