package rules

import "strings"

// URLPath returns the path of a URL or path: scheme and host, query and fragment dropped, a trailing slash
// removed (except for the root), so /pricing, /pricing/ and https://x.io/pricing?a=1 are all /pricing.
func URLPath(u string) string {
	if i := strings.IndexAny(u, "?#"); i >= 0 {
		u = u[:i]
	}
	if !strings.HasPrefix(u, "/") {
		if i := strings.Index(u, "://"); i >= 0 {
			u = u[i+3:]
		}
		if i := strings.IndexByte(u, '/'); i >= 0 {
			u = u[i:]
		} else {
			u = "/"
		}
	} else if strings.HasPrefix(u, "//") { // protocol-relative: //host/path
		if i := strings.IndexByte(u[2:], '/'); i >= 0 {
			u = u[2+i:]
		} else {
			u = "/"
		}
	}
	if len(u) > 1 && u[len(u)-1] == '/' {
		u = u[:len(u)-1]
	}
	return u
}

// NormalizeEmail lower-cases an email and returns "" for anything that cannot be one, so that a rule pointing at
// the wrong field never creates a lead called "true" or "anonymous".
func NormalizeEmail(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	at := strings.IndexByte(s, '@')
	if at <= 0 || at == len(s)-1 || len(s) > 320 || strings.ContainsAny(s, " \t\r\n<>,;\"") || strings.Count(s, "@") != 1 {
		return ""
	}
	return s
}
