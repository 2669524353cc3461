package immortal

import "errors"

var (
	// ErrNotPrimary is returned by App.Impulse when the app may not send an
	// impulse: before the coordinator made it primary, while it replays its
	// log, and after Serve returned. The returned error wraps it with the
	// reason.
	ErrNotPrimary = errors.New("immortal: not primary")
	// ErrUpgradeNotSupported is returned by Serve when the coordinator asks
	// for an upgrade (UpgradeTakeCheckpoint, UpgradeService) but the app
	// carries no next version (see Upgrade).
	ErrUpgradeNotSupported = errors.New("immortal: no next version to upgrade to")
)

// CallError is the error a result handler receives when the called method
// returned an error (or had no handler, or failed to decode the arguments):
// the callee's error text, carried back in the result.
type CallError struct {
	// Method is the method that was called.
	Method string
	// Message is the error text the callee sent.
	Message string
	// Code is the code of the declared error (DeclareError) the callee's
	// error wrapped, "" if none; errors.Is matches it.
	Code string
}

func (e *CallError) Error() string {
	return "immortal: call to " + e.Method + " failed: " + e.Message
}
