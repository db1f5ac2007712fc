package rules

import (
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"
	"strconv"
	"strings"
	"unicode"
)

// Sentinel errors a FieldError wraps; callers branch on them with errors.Is. Every FieldError also matches
// ErrInvalid.
var (
	ErrInvalid       = errors.New("invalid rule")
	ErrBadPath       = errors.New("bad dot path")
	ErrBadRegex      = errors.New("bad regex")
	ErrUnknownOp     = errors.New("unknown operator")
	ErrUnknownTarget = errors.New("unknown map target")
	ErrDuplicateID   = errors.New("duplicate rule id")
)

// FieldError is a validation error naming the rule and the field at fault, such as
// `rule acme/demo: match.conditions[0].op: unknown operator "equals" (want one of eq, ne, ...)`.
type FieldError struct {
	Rule  string // tenant/id, or #n (position in a file) when the id is missing
	Field string // match.conditions[0].path, map.email, id, ...
	Err   error  // one of the sentinels, or ErrInvalid
	Msg   string
}

func (e *FieldError) Error() string {
	msg := e.Err.Error()
	if e.Msg != "" {
		msg += ": " + e.Msg
	}
	return fmt.Sprintf("rule %s: %s: %s", e.Rule, e.Field, msg)
}

// Unwrap returns the sentinel.
func (e *FieldError) Unwrap() error { return e.Err }

// Is makes every FieldError match ErrInvalid.
func (e *FieldError) Is(target error) bool { return target == ErrInvalid }

// Limits that keep a rule's cost per event small and bounded whatever a tenant writes.
const (
	maxIDLen        = 128
	maxTextLen      = 256 // names, event and URL patterns, glob and prefix operands
	maxConditions   = 32
	maxMapTargets   = 32
	maxRegexLen     = 512
	maxRegexProgram = 500 // instructions of the compiled RE2 program
)

// Validate checks one rule and returns every problem found, each a *FieldError, joined. It normalises nothing;
// Compile does.
func Validate(r *Rule) error {
	v := validator{rule: ruleLabel(r, 0)}
	v.check(r)
	return errors.Join(v.errs...)
}

// ValidateAll validates every rule and also refuses two rules with the same tenant and id.
func ValidateAll(rs []Rule) error {
	var errs []error
	seen := map[string]int{}
	for i := range rs {
		v := validator{rule: ruleLabel(&rs[i], i)}
		v.check(&rs[i])
		errs = append(errs, v.errs...)
		k := rs[i].Tenant + "|" + rs[i].ID
		if j, dup := seen[k]; dup && rs[i].ID != "" {
			errs = append(errs, &FieldError{Rule: v.rule, Field: "id", Err: ErrDuplicateID,
				Msg: fmt.Sprintf("%q is also rule #%d of the file", rs[i].ID, j+1)})
		} else {
			seen[k] = i
		}
	}
	return errors.Join(errs...)
}

func ruleLabel(r *Rule, i int) string {
	if r.ID == "" {
		return "#" + strconv.Itoa(i+1)
	}
	return r.Tenant + "/" + r.ID
}

type validator struct {
	rule string
	errs []error
}

func (v *validator) fail(field string, err error, format string, args ...any) {
	v.errs = append(v.errs, &FieldError{Rule: v.rule, Field: field, Err: err, Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) check(r *Rule) {
	v.checkName("tenant", r.Tenant, true)
	v.checkName("id", r.ID, false)
	if len(r.Name) > maxTextLen {
		v.fail("name", ErrInvalid, "longer than %d characters", maxTextLen)
	}
	if len(r.Signal) > maxTextLen {
		v.fail("signal", ErrInvalid, "longer than %d characters", maxTextLen)
	}
	m := &r.Match
	switch m.Source {
	case "", "any", "segment", "webhook":
	default:
		v.fail("match.source", ErrInvalid, "%q is not segment, webhook or any", m.Source)
	}
	if len(m.Type) > 64 {
		v.fail("match.type", ErrInvalid, "longer than 64 characters")
	}
	if len(m.Event) > maxTextLen {
		v.fail("match.event", ErrInvalid, "longer than %d characters", maxTextLen)
	}
	if m.URL != "" && (len(m.URL) > maxTextLen || !(strings.HasPrefix(m.URL, "/") || strings.HasPrefix(m.URL, "*"))) {
		v.fail("match.url", ErrInvalid, "%q must be a path pattern starting with / (or *), at most %d characters", m.URL, maxTextLen)
	}
	if len(m.Conditions) > maxConditions {
		v.fail("match.conditions", ErrInvalid, "more than %d conditions", maxConditions)
	}
	for i, c := range m.Conditions {
		v.checkCondition(fmt.Sprintf("match.conditions[%d]", i), c)
	}
	if len(r.Map) > maxMapTargets {
		v.fail("map", ErrInvalid, "more than %d targets", maxMapTargets)
	}
	for _, target := range sortedKeys(r.Map) {
		field := "map." + target
		if !validTarget(target) {
			v.fail(field, ErrUnknownTarget, "%q (want email, name, company, title or fields.<name> with <name> of letters, digits, _)", target)
			continue
		}
		if _, err := ParsePath(r.Map[target]); err != nil {
			v.fail(field, ErrBadPath, "%v", err)
		}
	}
}

// checkName checks a tenant or id: it becomes part of a topic key (tenant|id) and of URLs, so no separator, no
// slash, no space.
func (v *validator) checkName(field, s string, tenant bool) {
	switch {
	case s == "":
		v.fail(field, ErrInvalid, "missing")
	case len(s) > maxIDLen:
		v.fail(field, ErrInvalid, "longer than %d characters", maxIDLen)
	default:
		for i, r := range s {
			ok := r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r) || (i > 0 && strings.ContainsRune("._-", r)))
			if tenant && i == 0 && r == '_' {
				ok = true
			}
			if !ok {
				v.fail(field, ErrInvalid, "%q: use letters, digits, '.', '_' and '-', starting with a letter or digit", s)
				return
			}
		}
	}
}

func (v *validator) checkCondition(field string, c Condition) {
	if _, err := ParsePath(c.Path); err != nil {
		v.fail(field+".path", ErrBadPath, "%v", err)
	}
	val := string(c.Value)
	switch c.Op {
	case OpEq, OpNe:
		if len(val) > maxTextLen {
			v.fail(field+".value", ErrInvalid, "longer than %d characters", maxTextLen)
		}
	case OpExists:
		if val != "" && val != "true" && val != "false" {
			v.fail(field+".value", ErrInvalid, "exists takes no value, true or false, got %q", val)
		}
	case OpPrefix, OpGlob:
		if val == "" || len(val) > maxTextLen {
			v.fail(field+".value", ErrInvalid, "%s needs a value of 1 to %d characters", c.Op, maxTextLen)
		}
	case OpRegex:
		if _, _, err := CompileRegex(val); err != nil {
			v.fail(field+".value", ErrBadRegex, "%v", err)
		}
	case OpGt, OpGte, OpLt, OpLte:
		if _, err := strconv.ParseFloat(val, 64); err != nil {
			v.fail(field+".value", ErrInvalid, "%s needs a number, got %q", c.Op, val)
		}
	default:
		v.fail(field+".op", ErrUnknownOp, "%q (want one of %s)", c.Op, strings.Join(Operators, ", "))
	}
}

// CompileRegex compiles a tenant's pattern under limits and returns its program size. RE2 matches in time
// linear in the input, but the factor is up to the program size (Go's NFA runs one thread per live
// instruction: [a-z]{0,999}x takes half a second on 32 KB here), so the program size is capped, the input is cut
// (maxRegexInput) and every Match has a budget of input bytes × instructions (regexBudget).
func CompileRegex(pattern string) (*regexp.Regexp, int, error) {
	if pattern == "" {
		return nil, 0, errors.New("empty pattern")
	}
	if len(pattern) > maxRegexLen {
		return nil, 0, fmt.Errorf("pattern longer than %d characters", maxRegexLen)
	}
	re, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return nil, 0, err
	}
	prog, err := syntax.Compile(re.Simplify())
	if err != nil {
		return nil, 0, err
	}
	if len(prog.Inst) > maxRegexProgram {
		return nil, 0, fmt.Errorf("pattern compiles to %d instructions, more than the %d allowed (use fewer or smaller counted repetitions)", len(prog.Inst), maxRegexProgram)
	}
	compiled, err := regexp.Compile(pattern)
	return compiled, len(prog.Inst), err
}

func validTarget(t string) bool {
	switch t {
	case TargetEmail, TargetName, TargetCompany, TargetTitle:
		return true
	}
	name, ok := strings.CutPrefix(t, TargetFieldPrefix)
	if !ok || name == "" || len(name) > 64 {
		return false
	}
	switch name {
	case TargetEmail, TargetName, TargetCompany, TargetTitle:
		return false // would collide with the named targets in Result.Fields
	}
	for i, r := range name {
		if !(r == '_' || r < unicode.MaxASCII && (unicode.IsLetter(r) || (i > 0 && unicode.IsDigit(r)))) {
			return false
		}
	}
	return true
}

func sortedKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sortStrings(ks)
	return ks
}
