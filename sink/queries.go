package sink

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

//go:embed queries/*.sql
var queriesFS embed.FS

// Query is one analyst query of sink/queries: NAME.sql, one SELECT over unqualified table names (run it with the
// sink's database as the default database), with parameters written {name:Type}.
//
// The {name:Type} syntax is ClickHouse's own query-parameter syntax, so the files run as they are in
// clickhouse-client --param_name=... on current releases. 18.16 predates server-side parameters, so Render
// substitutes them client side as quoted literals; the chdb check does the same.
type Query struct {
	Name string
	SQL  string
}

// ErrParam is wrapped by every error Render returns about a parameter.
var ErrParam = errors.New("bad query parameter")

var paramRE = regexp.MustCompile(`\{([A-Za-z_][A-Za-z0-9_]*):([A-Za-z0-9]+)\}`)

// Queries returns the embedded analyst queries by name (file name without .sql), sorted.
func Queries() ([]Query, error) {
	entries, err := fs.ReadDir(queriesFS, "queries")
	if err != nil {
		return nil, fmt.Errorf("reading queries: %w", err)
	}
	var out []Query
	for _, e := range entries {
		b, err := queriesFS.ReadFile(path.Join("queries", e.Name()))
		if err != nil {
			return nil, fmt.Errorf("reading query %s: %w", e.Name(), err)
		}
		out = append(out, Query{Name: strings.TrimSuffix(e.Name(), ".sql"), SQL: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Params returns the names of the parameters q uses, in order of first use.
func (q Query) Params() []string {
	var names []string
	seen := map[string]bool{}
	for _, m := range paramRE.FindAllStringSubmatch(q.SQL, -1) {
		if !seen[m[1]] {
			seen[m[1]] = true
			names = append(names, m[1])
		}
	}
	return names
}

// Render returns q's SQL with every {name:Type} replaced by params[name] as a literal of Type: String is quoted
// and escaped; (U)Int8..64 and Float64 must parse as such. A missing parameter or another type is an error.
func (q Query) Render(params map[string]string) (string, error) {
	var err error
	out := paramRE.ReplaceAllStringFunc(q.SQL, func(m string) string {
		sub := paramRE.FindStringSubmatch(m)
		name, typ := sub[1], sub[2]
		v, ok := params[name]
		if !ok {
			err = errors.Join(err, fmt.Errorf("%w: %s: {%s:%s} not given", ErrParam, q.Name, name, typ))
			return m
		}
		lit, lerr := literal(typ, v)
		if lerr != nil {
			err = errors.Join(err, fmt.Errorf("%w: %s: %s: %v", ErrParam, q.Name, name, lerr))
			return m
		}
		return lit
	})
	return out, err
}

func literal(typ, v string) (string, error) {
	switch typ {
	case "String":
		return QuoteString(v), nil
	case "UInt8", "UInt16", "UInt32", "UInt64":
		bits, _ := strconv.Atoi(typ[4:])
		if _, err := strconv.ParseUint(v, 10, bits); err != nil {
			return "", fmt.Errorf("%q is not a %s", v, typ)
		}
		return v, nil
	case "Int8", "Int16", "Int32", "Int64":
		bits, _ := strconv.Atoi(typ[3:])
		if _, err := strconv.ParseInt(v, 10, bits); err != nil {
			return "", fmt.Errorf("%q is not a %s", v, typ)
		}
		return v, nil
	case "Float64":
		if _, err := strconv.ParseFloat(v, 64); err != nil {
			return "", fmt.Errorf("%q is not a Float64", v)
		}
		return v, nil
	}
	return "", fmt.Errorf("type %s is not supported (String, (U)Int8..64, Float64)", typ)
}

// QuoteString returns s as a ClickHouse string literal: single quotes, with backslash and quote escaped.
func QuoteString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// Result is what a query returned: column names and rows of Go values (as clickhouse-go scans them).
type Result struct {
	Columns []string
	Rows    [][]any
}

// Run renders q with params and runs it on conn, whose default database must be the sink's database.
func (q Query) Run(ctx context.Context, conn driver.Conn, params map[string]string) (*Result, error) {
	sql, err := q.Render(params)
	if err != nil {
		return nil, err
	}
	rows, err := conn.Query(ctx, sql)
	if err != nil {
		return nil, fmt.Errorf("running query %s: %w", q.Name, err)
	}
	defer rows.Close()
	res := &Result{Columns: rows.Columns()}
	types := rows.ColumnTypes()
	for rows.Next() {
		ptrs := make([]any, len(types))
		for i, ct := range types {
			ptrs[i] = reflect.New(ct.ScanType()).Interface()
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, fmt.Errorf("reading query %s: %w", q.Name, err)
		}
		row := make([]any, len(ptrs))
		for i, p := range ptrs {
			row[i] = reflect.ValueOf(p).Elem().Interface()
		}
		res.Rows = append(res.Rows, row)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading query %s: %w", q.Name, err)
	}
	return res, nil
}

// Maps returns the rows as column name → value maps.
func (r *Result) Maps() []map[string]any {
	out := make([]map[string]any, len(r.Rows))
	for i, row := range r.Rows {
		m := make(map[string]any, len(row))
		for j, v := range row {
			m[r.Columns[j]] = v
		}
		out[i] = m
	}
	return out
}

// QueryByName returns the embedded query name (file name without .sql).
func QueryByName(name string) (Query, error) {
	all, err := Queries()
	if err != nil {
		return Query{}, err
	}
	for _, q := range all {
		if q.Name == name {
			return q, nil
		}
	}
	names := make([]string, len(all))
	for i, q := range all {
		names[i] = q.Name
	}
	return Query{}, fmt.Errorf("%w: no query %q (have %s)", ErrParam, name, strings.Join(names, ", "))
}
