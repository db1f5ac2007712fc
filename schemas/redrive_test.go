package schemas

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

func TestRedrives(t *testing.T) {
	for _, tc := range []struct {
		headers []kgo.RecordHeader
		want    int32
	}{
		{nil, 0},
		{[]kgo.RecordHeader{{Key: "other", Value: []byte("3")}}, 0},
		{[]kgo.RecordHeader{{Key: "other", Value: []byte("x")}, {Key: RedriveHeader, Value: []byte("3")}}, 3},
		{[]kgo.RecordHeader{{Key: RedriveHeader, Value: []byte("-1")}}, 0},
		{[]kgo.RecordHeader{{Key: RedriveHeader, Value: []byte("lots")}}, 0},
	} {
		if got := Redrives(&kgo.Record{Headers: tc.headers}); got != tc.want {
			t.Errorf("Redrives(%v) = %d, want %d", tc.headers, got, tc.want)
		}
	}
}
