package console

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// TestHealthRates: two scrapes of a stage's /metrics give each moved counter as its rate over the time between
// them, every gauge as it is, and leave out the counters that did not move and whatever is not signalstage's.
func TestHealthRates(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := n.Add(1)
		fmt.Fprintf(w, "# TYPE signalstage_x_rows_total counter\nsignalstage_x_rows_total{table=\"a\"} %d\n"+
			"signalstage_x_rows_total{table=\"b\"} 5\n# TYPE signalstage_x_lag gauge\nsignalstage_x_lag %d\n"+
			"# TYPE go_goroutines gauge\ngo_goroutines 9\n", i*100, i)
	}))
	defer srv.Close()
	h := newHealth(map[string]string{"x": srv.URL})
	first := scrapeOnce(context.Background(), srv.Client(), srv.URL)
	second := scrapeOnce(context.Background(), srv.Client(), srv.URL)
	if first.err != nil || second.err != nil {
		t.Fatal(first.err, second.err)
	}
	first.at = time.Unix(1000, 0)
	second.at = first.at.Add(4 * time.Second)
	h.prev["x"], h.last["x"] = first, second
	got := map[string]string{}
	for _, r := range h.view()[0].Rows {
		got[r.Series] = r.Kind + " " + r.Value
	}
	want := map[string]string{`signalstage_x_rows_total{table="a"}`: "rate 25.00/s", "signalstage_x_lag": "gauge 2"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("health rows = %v, want %v", got, want)
	}

	// A stage that does not answer shows its error; one not scraped yet says so.
	h = newHealth(map[string]string{"down": "http://127.0.0.1:1/metrics", "later": srv.URL})
	h.last["down"] = scrapeOnce(context.Background(), srv.Client(), "http://127.0.0.1:1/metrics")
	v := h.view()
	if v[0].Stage != "down" || v[0].Error == "" || v[1].Error != "not scraped yet" {
		t.Errorf("health view = %+v", v)
	}
}
