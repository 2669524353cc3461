package tui

import (
	"github.com/ambr-dev/ambr/engine/immortal"
)

// decodeEnvelope reads the Go binding's envelope for logview, with what a
// result answers (its call's number) and whether it is an error.
var decodeEnvelope = immortal.ViewEnvelope
