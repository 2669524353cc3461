package tui

import (
	"github.com/ambr-dev/ambr/engine/immortal"
	"github.com/ambr-dev/ambr/logfmt/logview"
)

// decodeEnvelope reads the Go binding's envelope for logview, with what a
// result answers (its call's number) and whether it is an error.
func decodeEnvelope(args []byte, reserved byte) (logview.Envelope, bool) {
	e, err := immortal.ParseEnvelope(args)
	if err != nil {
		return logview.Envelope{}, false
	}
	return logview.Envelope{Method: e.Method, Result: reserved == immortal.ReservedResult, CallID: e.CallID,
		Failed: e.Flags&immortal.FlagError != 0, Payload: e.Payload}, true
}
