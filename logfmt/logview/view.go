package logview

import (
	"encoding/hex"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/ambr-dev/ambr/logfmt"
)

// MessageView is one decoded message of a record.
type MessageView struct {
	Type    string `json:"type"`
	From    string `json:"from,omitempty"`
	FromSeq int64  `json:"from_seq,omitempty"`
	Kind    string `json:"kind,omitempty"`
	Method  *int32 `json:"method,omitempty"`
	// MethodName, Call and Payload come from the binding's envelope in the
	// arguments, when a decoder recognises it (see ArgsDecoder).
	MethodName string `json:"method_name,omitempty"`
	Result     bool   `json:"result,omitempty"`
	// CallID numbers a call with a result at its caller; a result carries
	// the id of its call. Known only from an EnvelopeDecoder.
	CallID int64 `json:"call_id,omitempty"`
	// Failed marks a result that is the call's error (its payload is the
	// error text). Known only from an EnvelopeDecoder.
	Failed  bool   `json:"failed,omitempty"`
	Size    int    `json:"size"`
	Args    string `json:"args,omitempty"`
	ArgsHex string `json:"args_hex,omitempty"`
	// Batch holds the RPCs of an RPCBatch or CountReplayableRPCBatch.
	Batch []MessageView `json:"batch,omitempty"`
	Error string        `json:"error,omitempty"`
}

// RecordView is one decoded record.
type RecordView struct {
	Seq       int64         `json:"seq"`
	Time      time.Time     `json:"time"`
	Segment   uint64        `json:"segment"`
	Offset    int64         `json:"offset"`
	Size      int           `json:"size"`
	OutCount  uint64        `json:"out_count"`
	OutDigest string        `json:"out_digest"`
	Messages  []MessageView `json:"messages"`
}

// ArgsDecoder recognises a binding's encoding of RPC arguments: the method
// name, whether the RPC is a call's result, and the payload. The Go binding
// provides one; logview itself knows only the protocol.
type ArgsDecoder func(args []byte, reserved byte) (method string, result bool, payload []byte, ok bool)

// Envelope is what a binding's EnvelopeDecoder finds in an RPC's
// arguments.
type Envelope struct {
	// Method is the method called; empty in results.
	Method string
	// Result says the RPC is the result of a call.
	Result bool
	// CallID is the caller's number of the call (0 for forks, impulses).
	CallID int64
	// Failed says the result is the call's error.
	Failed bool
	// Payload is the arguments, the result, or the error text.
	Payload []byte
}

// EnvelopeDecoder is a richer ArgsDecoder: with it, results say which
// call they answer and whether they are errors.
type EnvelopeDecoder func(args []byte, reserved byte) (Envelope, bool)

// envelopes adapts an ArgsDecoder to an EnvelopeDecoder.
func (dec ArgsDecoder) envelopes() EnvelopeDecoder {
	if dec == nil {
		return nil
	}
	return func(args []byte, reserved byte) (Envelope, bool) {
		method, result, payload, ok := dec(args, reserved)
		return Envelope{Method: method, Result: result, Payload: payload}, ok
	}
}

// View decodes rec, found at offset off of segment seg. dec, if not nil,
// decodes RPC arguments further.
func View(rec *logfmt.Record, seg uint64, off int64, dec ArgsDecoder) RecordView {
	return ViewEnvelopes(rec, seg, off, dec.envelopes())
}

// ViewEnvelopes is View with an EnvelopeDecoder.
func ViewEnvelopes(rec *logfmt.Record, seg uint64, off int64, dec EnvelopeDecoder) RecordView {
	v := RecordView{
		Seq: rec.Seq, Time: rec.LoggedTime(), Segment: seg, Offset: off, Size: rec.EncodedSize(),
		OutCount: rec.OutCount, OutDigest: fmt.Sprintf("%016x", rec.OutDigest),
		Messages: []MessageView{},
	}
	// Attribute each message to its source run.
	src, left, seq := 0, uint32(0), int64(0)
	if len(rec.Sources) > 0 {
		left, seq = rec.Sources[0].Count, rec.Sources[0].FirstSeq
	}
	it := logfmt.NewMessageIter(rec.Messages)
	for {
		m, ok := it.Next()
		if !ok {
			break
		}
		for left == 0 && src+1 < len(rec.Sources) {
			src++
			left, seq = rec.Sources[src].Count, rec.Sources[src].FirstSeq
		}
		mv := MessageEnvelopes(m, dec)
		if src < len(rec.Sources) && left > 0 {
			mv.From, mv.FromSeq = rec.Sources[src].Peer, seq
			left--
			if seq != 0 {
				seq++
			}
		}
		v.Messages = append(v.Messages, mv)
	}
	if err := it.Err(); err != nil {
		v.Messages = append(v.Messages, MessageView{Type: "undecodable", Error: err.Error()})
	}
	return v
}

// Message decodes one framed message.
func Message(m logfmt.Message, dec ArgsDecoder) MessageView {
	return MessageEnvelopes(m, dec.envelopes())
}

// MessageEnvelopes is Message with an EnvelopeDecoder.
func MessageEnvelopes(m logfmt.Message, dec EnvelopeDecoder) MessageView {
	mv := MessageView{Type: m.Type.String(), Size: m.EncodedLen()}
	switch m.Type {
	case logfmt.TypeRPC:
		r, err := logfmt.ParseRPC(m.Data)
		if err != nil {
			mv.Error = err.Error()
			return mv
		}
		id := r.MethodID
		mv.Kind, mv.Method = strings.ToLower(r.Kind.String()), &id
		args := r.Args
		if dec != nil {
			if e, ok := dec(r.Args, r.Reserved); ok {
				mv.MethodName, mv.Result, mv.CallID, mv.Failed, args = e.Method, e.Result, e.CallID, e.Failed, e.Payload
			}
		}
		setArgs(&mv, args)
	case logfmt.TypeRPCBatch, logfmt.TypeCountReplayableRPCBatch:
		b, err := logfmt.ParseBatch(m)
		if err != nil {
			mv.Error = err.Error()
			return mv
		}
		it := b.Iter()
		for {
			sub, ok := it.Next()
			if !ok {
				break
			}
			mv.Batch = append(mv.Batch, MessageEnvelopes(sub, dec))
		}
		if err := it.Err(); err != nil {
			mv.Error = err.Error()
		}
	case logfmt.TypeInitialMessage:
		args := m.Data
		if dec != nil {
			if e, ok := dec(m.Data, 0); ok {
				args = e.Payload
			}
		}
		setArgs(&mv, args)
	case logfmt.TypeAttachTo:
		setArgs(&mv, m.Data)
	}
	return mv
}

func setArgs(mv *MessageView, b []byte) {
	if len(b) == 0 {
		return
	}
	if printable(b) {
		mv.Args = string(b)
	} else {
		mv.ArgsHex = hex.EncodeToString(b)
	}
}

func printable(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	for _, r := range string(b) {
		if !unicode.IsPrint(r) && r != '\n' && r != '\t' {
			return false
		}
	}
	return true
}

// WriteText prints v as a header line and one indented line per message.
// maxArgs bounds how many characters of arguments are shown (0: all).
func (v RecordView) WriteText(w io.Writer, maxArgs int) error {
	_, err := fmt.Fprintf(w, "#%-6d %s  %d msg  %d B  log-%d@%d  out %d/%s\n",
		v.Seq, v.Time.Format("2006-01-02T15:04:05.000000Z07:00"), len(v.Messages), v.Size, v.Segment, v.Offset, v.OutCount, v.OutDigest)
	if err != nil {
		return err
	}
	for _, m := range v.Messages {
		if err := writeMessage(w, m, "    ", maxArgs); err != nil {
			return err
		}
	}
	return nil
}

func writeMessage(w io.Writer, m MessageView, indent string, maxArgs int) error {
	var b strings.Builder
	b.WriteString(indent)
	from := "-"
	if m.From != "" {
		from = m.From
		if m.FromSeq != 0 {
			from += ":" + strconv.FormatInt(m.FromSeq, 10)
		}
	}
	fmt.Fprintf(&b, "%-14s %-22s", from, m.Type)
	if m.Kind != "" {
		fmt.Fprintf(&b, " %-7s", m.Kind)
	}
	switch {
	case m.Result:
		fmt.Fprintf(&b, " %-12s", m.ResultLabel())
	case m.MethodName != "":
		fmt.Fprintf(&b, " %-12s", m.MethodName)
	case m.Method != nil:
		fmt.Fprintf(&b, " method %-5d", *m.Method)
	}
	fmt.Fprintf(&b, " %4d B", m.Size)
	switch {
	case m.Args != "":
		b.WriteString("  " + shorten(strconv.Quote(m.Args), maxArgs))
	case m.ArgsHex != "":
		b.WriteString("  0x" + shorten(m.ArgsHex, maxArgs))
	}
	if m.Error != "" {
		b.WriteString("  error: " + m.Error)
	}
	b.WriteByte('\n')
	if _, err := io.WriteString(w, b.String()); err != nil {
		return err
	}
	for _, sub := range m.Batch {
		if err := writeMessage(w, sub, indent+"  ", maxArgs); err != nil {
			return err
		}
	}
	return nil
}

func shorten(s string, n int) string {
	if n <= 0 || len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// ResultLabel names a result for people: "result of call 7", "error of
// call 7" (just "result" when the call's number is not known).
func (m MessageView) ResultLabel() string {
	label := "result"
	if m.Failed {
		label = "error"
	}
	if m.CallID != 0 {
		label += " of call " + strconv.FormatInt(m.CallID, 10)
	}
	return label
}
