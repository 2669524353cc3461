package main

import (
	"fmt"
	"strings"

	"github.com/ambr-dev/ambr/engine"
	"github.com/ambr-dev/ambr/engine/immortal"
	"github.com/ambr-dev/ambr/engine/layout"
	"github.com/ambr-dev/ambr/engine/vfs"
	"github.com/ambr-dev/ambr/logfmt/logview"
)

// describeLoggedRecord names what record seq of the instance in dir holds,
// for a crash-loop message: "call Withdraw from transfers", "" if it cannot
// be read. The record is near the end of the log: segments are searched
// from the newest.
func describeLoggedRecord(dir string, seq int64) string {
	in, err := layout.Open(vfs.Default(), dir)
	if err != nil {
		return ""
	}
	segs, err := in.Segments()
	if err != nil {
		return ""
	}
	for i := len(segs) - 1; i >= 0; i-- {
		lr, err := in.NewLogReader(segs[i])
		if err != nil {
			return ""
		}
		for {
			r, err := lr.Next()
			if err != nil || r.Seq > seq {
				break
			}
			if r.Seq == seq {
				lr.Close()
				return describeRecordView(logview.View(r, 0, 0, immortal.DecodeArgs))
			}
		}
		lr.Close()
		if first, ok := firstSeq(in, segs[i]); ok && first <= seq {
			return ""
		}
	}
	return ""
}

func firstSeq(in *layout.Instance, seg uint64) (int64, bool) {
	lr, err := in.NewLogReader(seg)
	if err != nil {
		return 0, false
	}
	defer lr.Close()
	r, err := lr.Next()
	if err != nil {
		return 0, false
	}
	return r.Seq, true
}

// describeRecordView is the first message of a record in words, and how
// many more there are.
func describeRecordView(v logview.RecordView) string {
	if len(v.Messages) == 0 {
		return ""
	}
	s := describeMessageView(v.Messages[0])
	if n := len(v.Messages) - 1; n > 0 {
		s += fmt.Sprintf(", and %d more message%s", n, map[bool]string{true: "", false: "s"}[n == 1])
	}
	return s
}

func describeMessageView(m logview.MessageView) string {
	if len(m.Batch) > 0 {
		return describeMessageView(m.Batch[0])
	}
	if m.Kind == "" {
		return m.Type
	}
	var b strings.Builder
	switch {
	case m.Result:
		b.WriteString("result of a call")
	case m.MethodName != "":
		b.WriteString(m.Kind + " " + m.MethodName)
	case m.Method != nil:
		fmt.Fprintf(&b, "%s of method %d", m.Kind, *m.Method)
	}
	if m.From != "" {
		b.WriteString(" from " + m.From)
	}
	return b.String()
}

// oversizeMessage is the sentence for a message over the limit: "the app
// sent a message of 1.1 GB; the limit is 1 GiB (method Withdraw to
// transfers)".
func oversizeMessage(o *engine.OversizeMessage, during string) string {
	s := fmt.Sprintf("the app sent a message of %s; the limit is %s", decimalBytes(o.Size), binaryBytes(o.Limit))
	var what []string
	if o.Known {
		method := fmt.Sprintf("method %d", o.MethodID)
		if name, _, _, ok := immortal.DecodeArgs(o.Args, immortal.ReservedRequest); ok && name != "" {
			method = "method " + name
		}
		if o.Dest != "" {
			what = append(what, method+" to "+o.Dest)
		} else {
			what = append(what, method+" to itself")
		}
	} else if o.Type.IsKnown() {
		what = append(what, o.Type.String()+" message")
	}
	if during != "" {
		what = append(what, "while handling "+during)
	}
	if len(what) > 0 {
		s += " (" + strings.Join(what, ", ") + ")"
	}
	return s
}

func decimalBytes(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.1f GB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	default:
		return fmt.Sprintf("%d bytes", n)
	}
}

func binaryBytes(n int64) string {
	if n%(1<<30) == 0 {
		return fmt.Sprintf("%d GiB", n>>30)
	}
	if n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}
