package engine

// ShrinkReplayAheadForTest makes a streamed recovery's log reader wait for
// the app after every record, standing in for a log longer than the
// read-ahead; the returned func puts the sizes back.
func ShrinkReplayAheadForTest() (restore func()) {
	ahead, batch := replayAheadMin, replayBatchBytes
	replayAheadMin, replayBatchBytes = 1, 1
	return func() { replayAheadMin, replayBatchBytes = ahead, batch }
}
