package schemas

import (
	"strconv"

	"github.com/twmb/franz-go/pkg/kgo"
)

// RedriveHeader marks a record a redrive (`sink redrive`) sent again from a dead letter; its value is how many
// times that record has been redriven. A stage that dead-letters such a record again copies the count into
// DeadLetter.Retries, so a record that keeps failing is visible as such and is not picked again by a redrive of
// the rows not redriven yet.
const RedriveHeader = "signalstage-redrive"

// Redrives returns the count of r's RedriveHeader, 0 when absent or unreadable.
func Redrives(r *kgo.Record) int32 {
	for _, h := range r.Headers {
		if h.Key == RedriveHeader {
			n, err := strconv.ParseInt(string(h.Value), 10, 32)
			if err != nil || n < 0 {
				return 0
			}
			return int32(n)
		}
	}
	return 0
}
