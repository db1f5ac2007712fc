package rules

import (
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/schemas"
	srules "github.com/signalstage/signalstage/schemas/rules"
)

// The rule model, its validation, Suggest, the file format and the Publisher are schemas/rules: every stage that
// reads or writes rules (the sink's console too) shares them, and a stage never imports another (DESIGN.md). This
// package is the processor's runtime: the compiled Set, its matcher, the Watcher, the admin API and the CLI. The
// names below keep its code and its callers reading as before; they are the same types and functions.
type (
	Rule       = srules.Rule
	Match      = srules.Match
	Condition  = srules.Condition
	Value      = srules.Value
	FieldError = srules.FieldError
	Suggestion = srules.Suggestion
	PathSample = srules.PathSample
	Publisher  = srules.Publisher

	path = srules.Path
)

// Operators, targets and errors of the rule model (schemas/rules).
const (
	OpEq     = srules.OpEq
	OpNe     = srules.OpNe
	OpExists = srules.OpExists
	OpPrefix = srules.OpPrefix
	OpGlob   = srules.OpGlob
	OpRegex  = srules.OpRegex
	OpGt     = srules.OpGt
	OpGte    = srules.OpGte
	OpLt     = srules.OpLt
	OpLte    = srules.OpLte

	TargetEmail       = srules.TargetEmail
	TargetName        = srules.TargetName
	TargetCompany     = srules.TargetCompany
	TargetTitle       = srules.TargetTitle
	TargetFieldPrefix = srules.TargetFieldPrefix
)

// Errors and functions of the rule model (schemas/rules).
var (
	ErrInvalid       = srules.ErrInvalid
	ErrBadPath       = srules.ErrBadPath
	ErrBadRegex      = srules.ErrBadRegex
	ErrUnknownOp     = srules.ErrUnknownOp
	ErrUnknownTarget = srules.ErrUnknownTarget
	ErrDuplicateID   = srules.ErrDuplicateID

	Operators = srules.Operators
)

// Validate is schemas/rules.Validate.
func Validate(r *Rule) error { return srules.Validate(r) }

// ValidateAll is schemas/rules.ValidateAll.
func ValidateAll(rs []Rule) error { return srules.ValidateAll(rs) }

// Suggest is schemas/rules.Suggest.
func Suggest(sample []byte, tenant string) (*Suggestion, error) {
	return srules.Suggest(sample, tenant)
}

// Parse is schemas/rules.Parse.
func Parse(data []byte) ([]Rule, error) { return srules.Parse(data) }

// EncodeYAML is schemas/rules.EncodeYAML.
func EncodeYAML(rs []Rule) ([]byte, error) { return srules.EncodeYAML(rs) }

// NewPublisher is schemas/rules.NewPublisher.
func NewPublisher(cl *kgo.Client, topic string) *Publisher { return srules.NewPublisher(cl, topic) }

// FromRecord is schemas/rules.FromRecord.
func FromRecord(rec *schemas.MappingRule) Rule { return srules.FromRecord(rec) }

func parsePath(s string) (path, error) { return srules.ParsePath(s) }
