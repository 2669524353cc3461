package main

import "testing"

func TestVersionString(t *testing.T) {
	for _, c := range []struct {
		v    versionInfo
		want string
	}{
		{versionInfo{Version: "v0.3.0", GoVersion: "go1.26.8", Platform: "linux/amd64"}, "ambr v0.3.0, go1.26.8 linux/amd64"},
		{versionInfo{Version: "(devel)", Commit: "3368e159fb5cf1b9382836a161399909f979c9bd", CommitTime: "2026-12-02T06:31:59Z", GoVersion: "go1.26.8", Platform: "linux/amd64"},
			"ambr (devel) (commit 3368e159fb5c, 2026-12-02T06:31:59Z), go1.26.8 linux/amd64"},
		{versionInfo{Version: "(devel)", Commit: "3368e159", Modified: true, GoVersion: "go1.26.8", Platform: "darwin/arm64"},
			"ambr (devel) (commit 3368e159, modified), go1.26.8 darwin/arm64"},
	} {
		if got := c.v.String(); got != c.want {
			t.Errorf("%+v: %q, want %q", c.v, got, c.want)
		}
	}
}
