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
