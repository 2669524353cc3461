package tui

import (
	"testing"

	"github.com/ambr-dev/ambr/logfmt/logview"
)

func TestFilterMatch(t *testing.T) {
	inc := logview.MessageView{Type: "RPC", From: "client", Kind: "call", MethodName: "Inc", Args: `{"n":12}`}
	res := logview.MessageView{Type: "RPC", From: "server", Kind: "fork", MethodName: "Inc", Result: true, Args: `41`}
	initial := logview.MessageView{Type: "InitialMessage", From: "server", Args: `null`}
	for _, c := range []struct {
		filter  string
		summary string // an index summary of the same record
		msg     logview.MessageView
		want    bool
	}{
		{"method:Inc", "client call Inc", inc, true},
		{"method:inc", "client call Inc", inc, true},
		{"method:Dec", "client call Inc", inc, false},
		{"peer:client", "client call Inc", inc, true},
		{"peer:client kind:fork", "client call Inc", inc, false},
		{"kind:call method:Inc peer:client", "client call Inc", inc, true},
		{"method:result", "server fork result", res, true},
		{"kind:initial", "server InitialMessage", initial, true},
		{`"n":12`, "", inc, true},
		{`"N":12`, "", inc, true},
		{`"n":13`, "", inc, false},
		{`re:"n":1\d\}`, "", inc, true},
		{`re:^4\d$ peer:server`, "", res, true},
		{`re:^4\d$ peer:client`, "", res, false},
	} {
		f, err := parseFilter(c.filter)
		if err != nil {
			t.Fatalf("%s: %v", c.filter, err)
		}
		if got := f.matchView(logview.RecordView{Messages: []logview.MessageView{c.msg}}); got != c.want {
			t.Errorf("%s on %+v: %v, want %v", c.filter, c.msg, got, c.want)
		}
		ok, sure := f.matchSummary(c.summary)
		if sure != (c.summary != "") {
			t.Errorf("%s: summary %q sure=%v", c.filter, c.summary, sure)
		}
		if sure && ok != c.want {
			t.Errorf("%s on summary %q: %v, want %v", c.filter, c.summary, ok, c.want)
		}
	}
	// A summary cut short cannot tell.
	f, _ := parseFilter("method:Dec")
	if _, sure := f.matchSummary("a call Inc; a call Inc; a call Inc; a call Inc; a call Inc; a call Inc; a call Inc; a call Inc; …"); sure {
		t.Error("a summary ending in … was taken as sure")
	}
	for _, bad := range []string{"", "   ", "re:("} {
		if _, err := parseFilter(bad); err == nil {
			t.Errorf("parseFilter(%q) took it", bad)
		}
	}
}
