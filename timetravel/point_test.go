package timetravel

import (
	"strings"
	"testing"
	"time"
)

func TestParsePoint(t *testing.T) {
	ok := []struct {
		in   string
		want Point
	}{
		{"1234", Point{Kind: PointSeq, Seq: 1234}},
		{"seq:7", Point{Kind: PointSeq, Seq: 7}},
		{"end", Point{Kind: PointEnd}},
		{"checkpoint:3+10", Point{Kind: PointCheckpoint, Checkpoint: 3, Offset: 10}},
		{"checkpoint:2", Point{Kind: PointCheckpoint, Checkpoint: 2}},
		{"2026-11-21T10:15:00Z", Point{Kind: PointTime, Time: time.Date(2026, 11, 21, 10, 15, 0, 0, time.UTC)}},
	}
	for _, c := range ok {
		got, err := ParsePoint(c.in)
		if err != nil {
			t.Fatalf("%q: %v", c.in, err)
		}
		if got.Kind != c.want.Kind || got.Seq != c.want.Seq || !got.Time.Equal(c.want.Time) || got.Checkpoint != c.want.Checkpoint || got.Offset != c.want.Offset {
			t.Fatalf("%q: got %+v want %+v", c.in, got, c.want)
		}
		if got.String() != c.in {
			t.Fatalf("%q: String() = %q", c.in, got.String())
		}
	}
	for _, in := range []string{"", "0", "-3", "seq:x", "checkpoint:", "checkpoint:0+1", "checkpoint:2+-1", "yesterday", "2026-13-01T00:00:00Z"} {
		_, err := ParsePoint(in)
		if err == nil || !strings.Contains(err.Error(), "bad point") {
			t.Fatalf("%q: err %v, want a bad point error", in, err)
		}
	}
}
