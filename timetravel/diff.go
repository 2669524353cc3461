package timetravel

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
)

// Change is one difference between two states: at Path, Old became New
// (JSON text; empty for a value that is absent on that side).
type Change struct {
	Path string `json:"path"`
	Old  string `json:"old,omitempty"`
	New  string `json:"new,omitempty"`
}

// Diff compares two states structurally when both are JSON (objects by key,
// arrays by index, at any depth) and byte-wise otherwise.
func Diff(a, b []byte) []Change {
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		if bytes.Equal(a, b) {
			return nil
		}
		return []Change{{Path: "(bytes)", Old: fmt.Sprintf("%d bytes", len(a)), New: fmt.Sprintf("%d bytes", len(b))}}
	}
	var out []Change
	diffValue("", va, vb, &out)
	return out
}

func jsonText(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func diffValue(path string, a, b any, out *[]Change) {
	switch x := a.(type) {
	case map[string]any:
		if y, ok := b.(map[string]any); ok {
			keys := map[string]bool{}
			for k := range x {
				keys[k] = true
			}
			for k := range y {
				keys[k] = true
			}
			sorted := make([]string, 0, len(keys))
			for k := range keys {
				sorted = append(sorted, k)
			}
			sort.Strings(sorted)
			for _, k := range sorted {
				p := k
				if path != "" {
					p = path + "." + k
				}
				va, ina := x[k]
				vb, inb := y[k]
				switch {
				case !ina:
					*out = append(*out, Change{Path: p, New: jsonText(vb)})
				case !inb:
					*out = append(*out, Change{Path: p, Old: jsonText(va)})
				default:
					diffValue(p, va, vb, out)
				}
			}
			return
		}
	case []any:
		if y, ok := b.([]any); ok {
			for i := 0; i < max(len(x), len(y)); i++ {
				p := path + "[" + strconv.Itoa(i) + "]"
				switch {
				case i >= len(x):
					*out = append(*out, Change{Path: p, New: jsonText(y[i])})
				case i >= len(y):
					*out = append(*out, Change{Path: p, Old: jsonText(x[i])})
				default:
					diffValue(p, x[i], y[i], out)
				}
			}
			return
		}
	}
	if ja, jb := jsonText(a), jsonText(b); ja != jb {
		if path == "" {
			path = "(state)"
		}
		*out = append(*out, Change{Path: path, Old: ja, New: jb})
	}
}
