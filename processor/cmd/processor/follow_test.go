package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/testenv"
)

// TestReplayFollow: `processor replay -from 0 -follow` against the real broker rewinds the group, then logs
// "replay progress" lines (stderr not a terminal) as the group's committed offsets move through the range (the
// test commits them as a processor would: half, then all), done only growing up to the records replayed, and
// returns 0 with a finished line once the group reached the end.
func TestReplayFollow(t *testing.T) {
	k := testenv.NewKafka(t, 2)
	const n = 400
	cl := k.Client()
	var recs []*kgo.Record
	for i := range n {
		recs = append(recs, &kgo.Record{Topic: k.Topic(schemas.TopicRaw), Key: []byte(fmt.Sprintf("t|v%d", i)), Value: []byte("x")})
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(context.Background(), k.Topic(schemas.TopicRaw))
	if err != nil {
		t.Fatal(err)
	}
	group := k.Prefix + "processor"
	var half float64 // what the group has done after commit(1)
	ends.Each(func(o kadm.ListedOffset) { half += float64(o.Offset / 2) })
	commit := func(frac int64) {
		set := kadm.Offsets{}
		ends.Each(func(o kadm.ListedOffset) {
			set.Add(kadm.Offset{Topic: o.Topic, Partition: o.Partition, At: o.Offset * frac / 2, LeaderEpoch: -1})
		})
		if _, err := adm.CommitOffsets(context.Background(), group, set); err != nil {
			t.Fatal(err)
		}
	}
	commit(2) // the processor had read everything; the replay rewinds it to 0

	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, stdout := os.Stderr, os.Stdout
	os.Stderr, os.Stdout = w, w
	defer func() { os.Stderr, os.Stdout = stderr, stdout }()
	out := make(chan string)
	go func() { b, _ := io.ReadAll(r); out <- string(b) }()
	code := make(chan int)
	go func() {
		code <- replay([]string{"-brokers", strings.Join(k.Brokers, ","), "-topic-prefix", k.Prefix, "-partitions", "2",
			"-from", "0", "-follow", "-progress", "100ms"})
	}()
	time.Sleep(3 * time.Second) // a few polls at 0 done
	commit(1)
	time.Sleep(3 * time.Second)
	commit(2)
	var c int
	select {
	case c = <-code:
	case <-time.After(60 * time.Second):
		t.Fatal("replay -follow did not return after the group reached the end")
	}
	os.Stderr, os.Stdout = stderr, stdout
	_ = w.Close()
	log := <-out
	if c != 0 {
		t.Fatalf("replay: exit %d\n%s", c, log)
	}
	var lines []map[string]any
	for _, l := range strings.Split(log, "\n") {
		var v map[string]any
		if json.Unmarshal([]byte(l), &v) == nil && v["msg"] == "replay progress" {
			lines = append(lines, v)
		}
	}
	seen := map[float64]bool{}
	prev := -1.0
	for _, l := range lines {
		done := l["done"].(float64)
		if l["total"].(float64) != n || done < prev || done > n {
			t.Errorf("progress line %v: want total %d and done growing up to it", l, n)
		}
		seen[done], prev = true, done
	}
	if !seen[0] || !seen[half] || len(lines) == 0 || lines[len(lines)-1]["finished"] != true || prev != n {
		t.Errorf("progress lines did not go 0, %v, %d finished:\n%s", half, n, log)
	}
}
