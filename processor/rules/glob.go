package rules

import "strings"

// glob is a compiled pattern where * matches any run of characters (including /) and everything else matches
// itself. Matching is linear in the value for a fixed pattern: pieces between stars are found leftmost-first,
// which is exact for star-only globs.
type glob struct {
	exact  bool // no star: the pattern must equal the value
	pieces []string
}

func compileGlob(p string) glob {
	if !strings.Contains(p, "*") {
		return glob{exact: true, pieces: []string{p}}
	}
	return glob{pieces: strings.Split(p, "*")}
}

func (g *glob) match(s string) bool {
	if g.exact {
		return s == g.pieces[0]
	}
	first, last := g.pieces[0], g.pieces[len(g.pieces)-1]
	if len(s) < len(first)+len(last) || !strings.HasPrefix(s, first) || !strings.HasSuffix(s, last) {
		return false
	}
	s = s[len(first) : len(s)-len(last)]
	for _, p := range g.pieces[1 : len(g.pieces)-1] {
		i := strings.Index(s, p)
		if i < 0 {
			return false
		}
		s = s[i+len(p):]
	}
	return true
}

// urlPath returns the path of a URL or path: scheme and host, query and fragment dropped, a trailing slash
// removed (except for the root), so /pricing, /pricing/ and https://x.io/pricing?a=1 are all /pricing.
func urlPath(u string) string {
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
