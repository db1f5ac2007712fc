package console

import (
	"fmt"
	"html/template"
	"strings"
)

var funcs = template.FuncMap{
	"spark": spark,
	// stages are the stages that write dead letters.
	"stages": func() []string { return []string{"ingest", "processor", "sink"} },
	// field and fieldAs build the data of the "field" template: input name, the validation field it reports
	// errors for (rules.FieldError.Field), label, value and the form's errors.
	"field": func(name, label, value string, errs map[string]string) fieldData {
		return fieldData{Name: name, Label: label, Value: value, Err: errs[name]}
	},
	"fieldAs": func(name, errField, label, value string, errs map[string]string) fieldData {
		return fieldData{Name: name, Label: label, Value: value, Err: errs[errField]}
	},
}

type fieldData struct{ Name, Label, Value, Err string }

// spark draws hourly counts as an inline SVG polyline (no script, no external asset), with a text label for
// screen readers.
func spark(xs []uint64) template.HTML {
	if len(xs) == 0 {
		return ""
	}
	const w, h = 96, 20
	var peak, total uint64
	for _, x := range xs {
		peak = max(peak, x)
		total += x
	}
	var pts strings.Builder
	for i, x := range xs {
		y := float64(h - 1)
		if peak > 0 {
			y = float64(h-1) - float64(x)/float64(peak)*float64(h-2)
		}
		fmt.Fprintf(&pts, "%.1f,%.1f ", float64(i)*float64(w)/float64(len(xs)-1), y)
	}
	return template.HTML(fmt.Sprintf(`<svg class="spark" width="%d" height="%d" viewBox="0 0 %d %d" role="img" `+
		`aria-label="%d signals in the last 24 hours, at most %d in an hour"><polyline fill="none" stroke="currentColor" `+
		`stroke-width="1.5" points="%s"/></svg>`, w, h, w, h, total, peak, strings.TrimSpace(pts.String())))
}
