package tui

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestStateJSONLines(t *testing.T) {
	state := `{"count":3,"results":[1,2,3,4,5,6,7,8],"byID":{"10":"j","2":"b","1":"a"},"names":{"b":1,"a":2},"big":12345678901234567890,"empty":[]}`
	folded := []string{
		`{`,
		`  "count": 3,`,
		`  "results": [`,
		`    1,`, `    2,`, `    3,`, `    4,`, `    5,`, `    6,`,
		`    … 2 more (z unfolds)`,
		`  ],`,
		`  "byID": {`,
		`    "1": "a",`,
		`    "2": "b",`,
		`    "10": "j"`,
		`  },`,
		`  "names": {`,
		`    "b": 1,`,
		`    "a": 2`,
		`  },`,
		`  "big": 12345678901234567890,`,
		`  "empty": []`,
		`}`,
	}
	if d := cmp.Diff(folded, stateJSONLines([]byte(state), true)); d != "" {
		t.Errorf("folded (-want +got):\n%s", d)
	}
	unfolded := stateJSONLines([]byte(state), false)
	if got := strings.Join(unfolded, "\n"); !strings.Contains(got, "    7,\n    8\n  ],") || strings.Contains(got, "more") {
		t.Errorf("unfolded state cut or wrong:\n%s", got)
	}
	if got := stateJSONLines([]byte("not json {"), true); len(got) != 1 || got[0] != "not json {" {
		t.Errorf("not JSON: %q", got)
	}
}
