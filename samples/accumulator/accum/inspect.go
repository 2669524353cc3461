package accum

import "github.com/ambr-dev/ambr/engine/immortal"

// NewestState reads the accumulator state held by the newest valid
// checkpoint of the instance in dir (read-only; safe while it runs).
func NewestState(dir string) (State, bool) {
	var s State
	ok := immortal.NewestState(dir, &s)
	return s, ok
}

// LoggedAdds counts how often each add (by its JSON argument) is in the log
// of the instance in dir: a correct run logs each of 1..target once.
func LoggedAdds(dir string) (map[string]int, error) {
	_, payloads, err := immortal.LoggedCalls(dir, "add")
	return payloads, err
}
