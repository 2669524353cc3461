package tui

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
)

// foldAfter is how many entries of an array or object the folded state
// pane shows before "… N more".
const foldAfter = 6

// jsonNode is a parsed JSON value that keeps its objects' key order
// (encoding/json's maps would lose it).
type jsonNode struct {
	scalar string // the encoded value of a string, number, bool or null
	keys   []string
	fields []*jsonNode // object values, by keys
	items  []*jsonNode // array elements
	object bool
	array  bool
}

func parseJSONNode(dec *json.Decoder) (*jsonNode, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		n := &jsonNode{object: t == '{', array: t == '['}
		for dec.More() {
			if n.object {
				k, err := dec.Token()
				if err != nil {
					return nil, err
				}
				n.keys = append(n.keys, k.(string))
			}
			v, err := parseJSONNode(dec)
			if err != nil {
				return nil, err
			}
			if n.object {
				n.fields = append(n.fields, v)
			} else {
				n.items = append(n.items, v)
			}
		}
		if _, err := dec.Token(); err != nil { // the closing delimiter
			return nil, err
		}
		if n.object {
			n.sortIntegerKeys()
		}
		return n, nil
	default:
		b, _ := json.Marshal(t) // json.Number marshals as itself
		return &jsonNode{scalar: string(b)}, nil
	}
}

// sortIntegerKeys orders an object whose keys are all integers by their
// value: Go's encoding/json writes map[int]T keys as text, so 10 came
// before 2.
func (n *jsonNode) sortIntegerKeys() {
	nums := make([]int64, len(n.keys))
	for i, k := range n.keys {
		v, err := strconv.ParseInt(k, 10, 64)
		if err != nil {
			return
		}
		nums[i] = v
	}
	idx := make([]int, len(n.keys))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return nums[idx[a]] < nums[idx[b]] })
	keys, fields := make([]string, len(idx)), make([]*jsonNode, len(idx))
	for i, j := range idx {
		keys[i], fields[i] = n.keys[j], n.fields[j]
	}
	n.keys, n.fields = keys, fields
}

// stateJSONLines renders a state for the state pane: indented, integer
// keys in numeric order and, when fold is set, arrays and objects below
// the top level cut after foldAfter entries with a line saying how many
// more there are. Text that is not JSON comes back as its lines.
func stateJSONLines(b []byte, fold bool) []string {
	dec := json.NewDecoder(bytes.NewReader(bytes.TrimSpace(b)))
	dec.UseNumber()
	root, err := parseJSONNode(dec)
	if err != nil {
		return strings.Split(string(b), "\n")
	}
	if _, err := dec.Token(); err != io.EOF {
		return strings.Split(string(b), "\n")
	}
	var out []string
	root.render(&out, "", "", 0, fold, false)
	return out
}

func (n *jsonNode) render(out *[]string, indent, label string, depth int, fold, comma bool) {
	tail := ""
	if comma {
		tail = ","
	}
	switch {
	case n.object || n.array:
		open, closing, count := "{", "}", len(n.keys)
		if n.array {
			open, closing, count = "[", "]", len(n.items)
		}
		if count == 0 {
			*out = append(*out, indent+label+open+closing+tail)
			return
		}
		*out = append(*out, indent+label+open)
		shown := count
		if fold && depth > 0 && count > foldAfter {
			shown = foldAfter
		}
		for i := 0; i < shown; i++ {
			last := i == count-1
			if n.object {
				k, _ := json.Marshal(n.keys[i])
				n.fields[i].render(out, indent+"  ", string(k)+": ", depth+1, fold, !last)
			} else {
				n.items[i].render(out, indent+"  ", "", depth+1, fold, !last)
			}
		}
		if shown < count {
			*out = append(*out, fmt.Sprintf("%s  … %d more (z unfolds)", indent, count-shown))
		}
		*out = append(*out, indent+closing+tail)
	default:
		*out = append(*out, indent+label+n.scalar+tail)
	}
}
