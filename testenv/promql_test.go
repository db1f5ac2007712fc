package testenv

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"
)

// promqlRefs is what one PromQL expression refers to: each metric name with the label names its matchers use,
// and the label names of its by/without/on/ignoring/group_left/group_right clauses. It is what the metric-name
// check needs, not a PromQL parser: functions, operators, numbers, durations and strings are skipped.
type promqlRefs struct {
	metrics  map[string]map[string]bool
	grouping map[string]bool
}

// promqlKeywords are identifiers that are neither metrics nor functions.
var promqlKeywords = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true,
	"atan2": true, "inf": true, "nan": true, "group_left": true, "group_right": true}

// promqlAggregations may be followed by a by/without clause before their "(", so they are known by name.
var promqlAggregations = map[string]bool{"sum": true, "min": true, "max": true, "avg": true, "group": true,
	"stddev": true, "stdvar": true, "count": true, "count_values": true, "bottomk": true, "topk": true,
	"quantile": true, "limitk": true, "limit_ratio": true}

// promqlGrouping are the clauses whose parenthesised list holds label names.
var promqlGrouping = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true,
	"group_left": true, "group_right": true}

func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}
func isIdentChar(c byte) bool { return isIdentStart(c) || '0' <= c && c <= '9' }

// parsePromQL scans expr for the metrics and labels it names.
func parsePromQL(expr string) (promqlRefs, error) {
	r := promqlRefs{metrics: map[string]map[string]bool{}, grouping: map[string]bool{}}
	i, n := 0, len(expr)
	skipSpace := func(j int) int {
		for j < n && strings.IndexByte(" \t\r\n", expr[j]) >= 0 {
			j++
		}
		return j
	}
	// skipString returns the index after the string literal starting at j.
	skipString := func(j int) (int, error) {
		q := expr[j]
		for j++; j < n; j++ {
			if expr[j] == '\\' && q != '`' {
				j++
				continue
			}
			if expr[j] == q {
				return j + 1, nil
			}
		}
		return 0, fmt.Errorf("unterminated string in %q", expr)
	}
	ident := func(j int) (string, int) {
		k := j
		for k < n && isIdentChar(expr[k]) {
			k++
		}
		return expr[j:k], k
	}
	// labelList reads "(a, b)" at j into dst, returning the index after ")".
	labelList := func(j int, dst map[string]bool) (int, error) {
		for j++; j < n && expr[j] != ')'; {
			j = skipSpace(j)
			switch {
			case j < n && isIdentStart(expr[j]):
				var name string
				name, j = ident(j)
				dst[name] = true
			case j < n && (expr[j] == ',' || expr[j] == ')'):
				if expr[j] == ',' {
					j++
				}
			default:
				return 0, fmt.Errorf("unexpected %q in a label list of %q", expr[j:], expr)
			}
		}
		if j >= n {
			return 0, fmt.Errorf("unterminated label list in %q", expr)
		}
		return j + 1, nil
	}
	// matchers reads "{a="x", b=~"y"}" at j into dst.
	matchers := func(j int, dst map[string]bool) (int, error) {
		for j++; j < n && expr[j] != '}'; {
			switch c := expr[j]; {
			case c == '"' || c == '\'' || c == '`':
				var err error
				if j, err = skipString(j); err != nil {
					return 0, err
				}
			case isIdentStart(c):
				var name string
				name, j = ident(j)
				dst[name] = true
			default:
				j++
			}
		}
		if j >= n {
			return 0, fmt.Errorf("unterminated matchers in %q", expr)
		}
		return j + 1, nil
	}
	var err error
	for i < n {
		c := expr[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			if i, err = skipString(i); err != nil {
				return r, err
			}
		case c == '#':
			for i < n && expr[i] != '\n' {
				i++
			}
		case c == '[':
			for i < n && expr[i] != ']' {
				i++
			}
		case '0' <= c && c <= '9' || c == '.':
			for i < n && (isIdentChar(expr[i]) || expr[i] == '.') {
				i++
			}
		case c == '{': // a selector without a metric name
			if i, err = matchers(i, map[string]bool{}); err != nil {
				return r, err
			}
		case isIdentStart(c):
			var name string
			name, i = ident(i)
			next := skipSpace(i)
			switch {
			case promqlGrouping[name] && next < n && expr[next] == '(':
				if i, err = labelList(next, r.grouping); err != nil {
					return r, err
				}
			case promqlKeywords[name] || promqlAggregations[name]:
			case next < n && expr[next] == '(': // a function or aggregation
			default:
				labels := r.metrics[name]
				if labels == nil {
					labels = map[string]bool{}
					r.metrics[name] = labels
				}
				if next < n && expr[next] == '{' {
					if i, err = matchers(next, labels); err != nil {
						return r, err
					}
				}
			}
		default:
			i++
		}
	}
	return r, nil
}

// labelSet is m's keys, sorted and joined, for comparisons in tests and messages.
func labelSet(m map[string]bool) string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

func TestParsePromQL(t *testing.T) {
	for _, tc := range []struct {
		expr     string
		metrics  map[string][]string
		grouping []string
	}{
		{`up`, map[string][]string{"up": {}}, nil},
		{`sum by (code) (rate(signalstage_ingest_requests_total{code=~"5..",code!="503"}[5m]))`,
			map[string][]string{"signalstage_ingest_requests_total": {"code"}}, []string{"code"}},
		{`histogram_quantile(0.99, sum by (le) (rate(x_seconds_bucket{job="a b", route='w'}[5m]))) > 2`,
			map[string][]string{"x_seconds_bucket": {"job", "route"}}, []string{"le"}},
		{"sum(rate(a_total[10m])) > 0\n  unless sum(rate(b_total{topic=\"raw\"}[10m] offset 1h)) > 0",
			map[string][]string{"a_total": {}, "b_total": {"topic"}}, nil},
		{`absent(up{job="x"}) or label_replace(vector(1), "dst", "$1", "src", "(.*)") * on (instance) group_left (pod) c`,
			map[string][]string{"up": {"job"}, "c": {}}, []string{"instance", "pod"}},
		{`sum(rate(m[5m])) without (instance, pod) / ignoring(x) sum(n @ start())`,
			map[string][]string{"m": {}, "n": {}}, []string{"instance", "pod", "x"}},
		{`1e3 * m:recorded:rate5m{a="}"}`, map[string][]string{"m:recorded:rate5m": {"a"}}, nil},
	} {
		r, err := parsePromQL(tc.expr)
		if err != nil {
			t.Fatalf("%s: %v", tc.expr, err)
		}
		got, want := map[string]string{}, map[string]string{}
		for m, labels := range r.metrics {
			got[m] = labelSet(labels)
		}
		for m, labels := range tc.metrics {
			want[m] = strings.Join(labels, ",")
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: metrics %v, want %v", tc.expr, got, want)
		}
		if g := labelSet(r.grouping); g != strings.Join(tc.grouping, ",") {
			t.Errorf("%s: grouping labels %q, want %q", tc.expr, g, tc.grouping)
		}
	}
	if _, err := parsePromQL(`sum(x{a="unterminated})`); err == nil {
		t.Error("an unterminated string parsed without an error")
	}
}

// exposition is what a scrape of one or more /metrics endpoints exports: every series name a query can select
// (histograms as _bucket, _sum and _count), with the label names seen on it.
type exposition map[string]map[string]bool

// add parses one scrape in the Prometheus text format.
func (e exposition) add(body string) error {
	for _, line := range strings.Split(body, "\n") {
		if line == "" {
			continue
		}
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			f := strings.Fields(rest)
			if len(f) != 2 {
				return fmt.Errorf("bad TYPE line %q", line)
			}
			names := []string{f[0]}
			switch f[1] {
			case "histogram":
				names = []string{f[0] + "_bucket", f[0] + "_sum", f[0] + "_count"}
			case "summary":
				names = append(names, f[0]+"_sum", f[0]+"_count")
			}
			for _, n := range names {
				if e[n] == nil {
					e[n] = map[string]bool{}
				}
			}
			continue
		}
		if line[0] == '#' {
			continue
		}
		name, rest, _ := strings.Cut(line, "{")
		if rest == "" { // no labels: "name value"
			name, _, _ = strings.Cut(line, " ")
		}
		labels := e[name]
		if labels == nil {
			labels = map[string]bool{}
			e[name] = labels
		}
		for rest != "" && rest[0] != '}' {
			lname, after, ok := strings.Cut(rest, `="`)
			if !ok {
				return fmt.Errorf("bad labels in %q", line)
			}
			labels[strings.TrimLeft(lname, ",")] = true
			j := 0
			for ; j < len(after) && after[j] != '"'; j++ {
				if after[j] == '\\' {
					j++
				}
			}
			if j >= len(after) {
				return fmt.Errorf("unterminated label value in %q", line)
			}
			rest = after[j+1:]
		}
	}
	return nil
}

func TestExposition(t *testing.T) {
	e := exposition{}
	err := e.add(`# HELP a_seconds Time.
# TYPE a_seconds histogram
a_seconds_bucket{le="0.1"} 1
a_seconds_bucket{le="+Inf"} 1
a_seconds_sum 0.05
a_seconds_count 1
# TYPE b_total counter
b_total{table="signals",reason="x \"quoted\", comma"} 3
# TYPE c gauge
c 1
# TYPE d summary
d{quantile="0.5"} 1
`)
	if err != nil {
		t.Fatal(err)
	}
	for name, labels := range map[string][]string{"a_seconds_bucket": {"le"}, "a_seconds_sum": {}, "a_seconds_count": {},
		"b_total": {"reason", "table"}, "c": {}, "d": {"quantile"}, "d_sum": {}, "d_count": {}} {
		got, ok := e[name]
		if !ok {
			t.Errorf("%s not exported", name)
			continue
		}
		if g := labelSet(got); g != strings.Join(labels, ",") {
			t.Errorf("%s: labels %q, want %q", name, g, labels)
		}
	}
	if _, ok := e["a_seconds"]; ok {
		t.Error("a histogram's own name is not a series a query can select")
	}
}
