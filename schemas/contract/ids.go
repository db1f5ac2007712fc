package contract

import (
	"strings"

	"github.com/signalstage/signalstage/schemas"
)

// placeholders are the id values that name nobody: what SDKs, templates and serializers write when they have no id
// (JavaScript's undefined and null and String({}), Python's None, Objective-C's (null) and <null>, Ruby's nil,
// iOS's all-zero advertising id when tracking is limited), defaults integrations fill in ("anonymous", "guest",
// "unknown", "n/a"), and booleans or NaN that reached an id field. Compared trimmed and case-insensitively. Any id
// made of zeros and dashes only ("0", "-1"'s cousins "000", "-", the nil UUID) is a placeholder too.
var placeholders = map[string]bool{
	"": true, "null": true, "(null)": true, "<null>": true, "nil": true, "none": true, "undefined": true,
	"anonymous": true, "anon": true, "guest": true, "unknown": true, "n/a": true, "na": true, "-1": true,
	"[object object]": true, "{}": true, "[]": true, "true": true, "false": true, "nan": true, "infinity": true,
}

// IsPlaceholder reports whether id names nobody: it never routes an event to a visitor's partition, never holds
// signals, and never links to a lead (see placeholders).
func IsPlaceholder(id string) bool {
	id = strings.TrimSpace(id)
	if onlyZerosAndDashes(id) {
		return true
	}
	if len(id) > len("[object object]") || (len(id) > 9 && id[0] != '[') {
		return false // every placeholder is short: no lower-casing of real ids
	}
	var buf [16]byte
	low := buf[:0]
	for i := 0; i < len(id); i++ {
		c := id[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		low = append(low, c)
	}
	return placeholders[string(low)]
}

func onlyZerosAndDashes(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] != '0' && s[i] != '-' {
			return false
		}
	}
	return true // "" too
}

// Visitor returns the id that owns an event's visitor: a legal anonymousId, else a legal userId, with its kind
// (schemas.IDKindAnonymous or schemas.IDKindUser). ok is false when both are placeholders. The edge routes by it
// and the processor holds signals under it, so the two always agree: {"anonymousId":"guest","userId":"U"} is
// routed by U and held under U.
func Visitor(anonymousID, userID string) (kind, id string, ok bool) {
	if !IsPlaceholder(anonymousID) {
		return schemas.IDKindAnonymous, anonymousID, true
	}
	if !IsPlaceholder(userID) {
		return schemas.IDKindUser, userID, true
	}
	return "", "", false
}

// RoutingID returns the id an event's record key carries after the tenant (schemas.RoutingKey): the visitor id,
// else the messageId, else the first 16 hex digits of the signal id, so a retry of an event without ids, however
// it was re-serialized, lands on the same partition (where the dedup state of its id lives).
func RoutingID(f *schemas.EventFields) string {
	switch {
	case f.VisitorID != "":
		return f.VisitorID
	case f.MessageID != "":
		return f.MessageID
	case len(f.SignalID) >= 16:
		return f.SignalID[:16]
	}
	return f.SignalID
}

// NormalizeEmail returns s lower-cased and trimmed when it looks like an email address (one @ with text on both
// sides, no spaces or list separators, at most 320 bytes), else "". A lead is identified by this form.
func NormalizeEmail(s string) string {
	b := normalizeEmail([]byte(s))
	if b == nil {
		return ""
	}
	return string(b)
}

// normalizeEmail is NormalizeEmail in place: it returns the trimmed, lower-cased sub-slice of b, or nil.
func normalizeEmail(b []byte) []byte {
	for len(b) > 0 && isSpace(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isSpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	if len(b) > 320 {
		return nil
	}
	at := -1
	for i, c := range b {
		switch c {
		case '@':
			if at >= 0 {
				return nil
			}
			at = i
		case ' ', '\t', '\r', '\n', ',', ';', '<', '>', '"':
			return nil
		}
	}
	if at <= 0 || at == len(b)-1 {
		return nil
	}
	return lower(b)
}

// isSpace is strings.TrimSpace's ASCII set (enough here: an address with other space is refused anyway).
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

// EmailDomain returns the domain of a normalized email ("" when it has none).
func EmailDomain(email string) string {
	if at := strings.LastIndexByte(email, '@'); at >= 0 {
		return email[at+1:]
	}
	return ""
}
