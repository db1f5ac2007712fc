package console

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// healthEvery is how often the console scrapes the stages' /metrics while it runs; rates are over the last two
// scrapes.
const healthEvery = 5 * time.Second

// scrape is one stage's metrics at one time: series (name{labels}) → value, counters and gauges only.
type scrape struct {
	at     time.Time
	err    error
	values map[string]float64
	kinds  map[string]dto.MetricType // by family name
}

// health keeps the last two scrapes of each stage.
type health struct {
	urls map[string]string // stage → metrics URL
	mu   sync.Mutex
	prev map[string]scrape
	last map[string]scrape
}

func newHealth(urls map[string]string) *health {
	return &health{urls: urls, prev: map[string]scrape{}, last: map[string]scrape{}}
}

// run scrapes every stage every healthEvery until ctx is done.
func (h *health) run(ctx context.Context) {
	if len(h.urls) == 0 {
		return
	}
	cl := &http.Client{Timeout: 3 * time.Second}
	t := time.NewTicker(healthEvery)
	defer t.Stop()
	for {
		for stage, u := range h.urls {
			sc := scrapeOnce(ctx, cl, u)
			h.mu.Lock()
			if old, ok := h.last[stage]; ok && old.err == nil {
				h.prev[stage] = old
			}
			h.last[stage] = sc
			h.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func scrapeOnce(ctx context.Context, cl *http.Client, u string) scrape {
	sc := scrape{at: time.Now(), values: map[string]float64{}, kinds: map[string]dto.MetricType{}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		sc.err = err
		return sc
	}
	req.Header.Set("Accept", "text/plain")
	resp, err := cl.Do(req)
	if err != nil {
		sc.err = err
		return sc
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		sc.err = fmt.Errorf("%s: %s", u, resp.Status)
		return sc
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		sc.err = fmt.Errorf("parsing %s: %w", u, err)
		return sc
	}
	for name, f := range fams {
		if !strings.HasPrefix(name, "signalstage_") {
			continue // the Go and process collectors: not the pipeline's health
		}
		for _, m := range f.GetMetric() {
			var v float64
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				v = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				v = m.GetGauge().GetValue()
			default:
				continue
			}
			sc.kinds[name] = f.GetType()
			sc.values[name+labels(m)] = v
		}
	}
	return sc
}

func labels(m *dto.Metric) string {
	if len(m.GetLabel()) == 0 {
		return ""
	}
	var ls []string
	for _, l := range m.GetLabel() {
		ls = append(ls, l.GetName()+"="+fmt.Sprintf("%q", l.GetValue()))
	}
	sort.Strings(ls)
	return "{" + strings.Join(ls, ",") + "}"
}

// healthRow is one series on the health page: a counter's rate per second or a gauge's value.
type healthRow struct {
	Series, Kind, Value string
}

type stageHealth struct {
	Stage, URL, Error, At string
	Rows                  []healthRow
}

// view returns every stage's series: counters as rates over the last two scrapes (when there are two), gauges
// as they are; counters that did not move are left out so that what is happening stands out.
func (h *health) view() []stageHealth {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []stageHealth
	stages := make([]string, 0, len(h.urls))
	for s := range h.urls {
		stages = append(stages, s)
	}
	sort.Strings(stages)
	for _, stage := range stages {
		sh := stageHealth{Stage: stage, URL: h.urls[stage]}
		last, ok := h.last[stage]
		if !ok {
			sh.Error = "not scraped yet"
			out = append(out, sh)
			continue
		}
		sh.At = last.at.UTC().Format(time.RFC3339)
		if last.err != nil {
			sh.Error = last.err.Error()
		}
		prev, hasPrev := h.prev[stage]
		keys := make([]string, 0, len(last.values))
		for k := range last.values {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fam := k
			if i := strings.IndexByte(k, '{'); i >= 0 {
				fam = k[:i]
			}
			v := last.values[k]
			switch last.kinds[fam] {
			case dto.MetricType_GAUGE:
				sh.Rows = append(sh.Rows, healthRow{Series: k, Kind: "gauge", Value: fmt.Sprintf("%g", v)})
			case dto.MetricType_COUNTER:
				if !hasPrev {
					continue
				}
				dt := last.at.Sub(prev.at).Seconds()
				d := v - prev.values[k]
				if d == 0 || dt <= 0 {
					continue
				}
				sh.Rows = append(sh.Rows, healthRow{Series: k, Kind: "rate", Value: fmt.Sprintf("%.2f/s", d/dt)})
			}
		}
		out = append(out, sh)
	}
	return out
}

func (s *Server) healthPage(w http.ResponseWriter, r *http.Request, sess *session) {
	if !sess.admin() {
		http.Error(w, "pipeline health is for the admin login (its metrics name every tenant)", http.StatusForbidden)
		return
	}
	s.render(w, http.StatusOK, "health", sess, map[string]any{"Stages": s.health.view(), "Every": healthEvery.String()})
}
