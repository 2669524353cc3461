package main

import "github.com/ambr-dev/ambr/engine/immortal"

// newestState decodes the app state of the newest valid checkpoint of dir.
func newestState(dir string, v any) bool { return immortal.NewestState(dir, v) }

// loggedCalls counts the requests for method in dir's log, by sender.
func loggedCalls(dir, method string) (map[string]int, error) {
	calls, _, err := immortal.LoggedCalls(dir, method)
	return calls, err
}
