package tui

import (
	"strings"
	"testing"

	"github.com/charmbracelet/lipgloss"

	"github.com/ambr-dev/ambr/engine/layout"
	"github.com/ambr-dev/ambr/logfmt"
	"github.com/ambr-dev/ambr/timetravel"
)

// TestHeaderNamesTheCursorsBuild: in an instance run by several builds (an
// upgrade), the header names the build that ran the record at the cursor,
// and its version; with one build it shows the instance's version and app.
func TestHeaderNamesTheCursorsBuild(t *testing.T) {
	c := &common{styles: NewStyles(lipgloss.DefaultRenderer()), keys: DefaultKeyMap(), width: 200, height: 24}
	b := newBrowserModel(c, "/nowhere/server")
	b.in = &layout.Instance{Manifest: &logfmt.Manifest{Instance: "server", Version: 1, App: logfmt.AppBuild{Source: "./server-v2"}}}
	b.first, b.last = 1, 80
	b.builds = []timetravel.BuildRange{
		{First: 1, Checkpoint: 1, Source: "./server", Version: 0, N: 1},
		{First: 42, Checkpoint: 2, Source: "./server-v2", Version: 1, N: 2},
	}
	for _, tc := range []struct {
		cursor int64
		want   string
	}{
		{41, "#41 ran build 1/2 (v0) · app ./server"},
		{42, "#42 ran build 2/2 (v1) · app ./server-v2"},
	} {
		b.cursor = tc.cursor
		if h := b.header(200); !strings.Contains(h, tc.want) {
			t.Errorf("cursor at #%d: header %q, want %q in it", tc.cursor, h, tc.want)
		}
	}
	b.builds = b.builds[:1]
	if h := b.header(200); !strings.Contains(h, "v1 · app ./server-v2") {
		t.Errorf("one build: header %q", h)
	}
}
