package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestDiffLineColour: diff lines are red for "-" and green for "+" when
// colour is forced, and plain otherwise (a pipe, NO_COLOR).
func TestDiffLineColour(t *testing.T) {
	t.Setenv("NO_COLOR", "")
	t.Setenv("CLICOLOR_FORCE", "1")
	st := newCLIStyles(&bytes.Buffer{})
	if got := st.diffLine("- expected"); !strings.Contains(got, "\x1b[31m") || !strings.Contains(got, "- expected") {
		t.Errorf("forced colour, a - line: %q", got)
	}
	if got := st.diffLine("+ actual"); !strings.Contains(got, "\x1b[32m") {
		t.Errorf("forced colour, a + line: %q", got)
	}
	if got := st.diffLine("  same"); got != "  same" {
		t.Errorf("a context line was changed: %q", got)
	}
	t.Setenv("CLICOLOR_FORCE", "")
	t.Setenv("NO_COLOR", "1")
	plain := newCLIStyles(&bytes.Buffer{})
	if got := plain.diffLine("- expected"); got != "- expected" {
		t.Errorf("NO_COLOR, a - line: %q", got)
	}
}
