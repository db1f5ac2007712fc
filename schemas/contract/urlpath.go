package contract

import "net/url"

// appendURLPath appends the page-name fallback of a page or screen call without a name: properties.path when set,
// else the path of the URL (as net/url decodes it), else "/" for a URL without one, else nothing.
func appendURLPath(dst, u, path []byte) []byte {
	if len(path) > 0 {
		return append(dst, path...)
	}
	if len(u) == 0 {
		return dst
	}
	if p, ok := simplePath(u); ok {
		if len(p) == 0 {
			return append(dst, '/')
		}
		return append(dst, p...)
	}
	if pu, err := url.Parse(string(u)); err == nil && pu.Path != "" {
		return append(dst, pu.Path...)
	}
	return append(dst, '/')
}

// simplePath returns the path of an absolute URL whose every byte url.Parse takes as is (scheme://host/path with
// plain characters and no percent escapes), without url.Parse's allocations; ok is false for anything else.
func simplePath(u []byte) (path []byte, ok bool) {
	i := 0
	for i < len(u) && (u[i] >= 'a' && u[i] <= 'z' || u[i] >= 'A' && u[i] <= 'Z' || i > 0 && (isDigit(u[i]) || u[i] == '+' || u[i] == '-' || u[i] == '.')) {
		i++
	}
	if i == 0 || len(u)-i < 3 || u[i] != ':' || u[i+1] != '/' || u[i+2] != '/' {
		return nil, false
	}
	i += 3
	start := i
	for i < len(u) && (u[i] >= 'a' && u[i] <= 'z' || u[i] >= 'A' && u[i] <= 'Z' || isDigit(u[i]) || u[i] == '.' || u[i] == '-') {
		i++
	}
	if i == start {
		return nil, false
	}
	if i < len(u) && u[i] == ':' { // a port
		i++
		for i < len(u) && isDigit(u[i]) {
			i++
		}
	}
	pstart := i
	for i < len(u) && u[i] != '?' && u[i] != '#' {
		c := u[i]
		if c <= ' ' || c >= 0x7f || c == '%' || c == '\\' || c == '"' || c == '<' || c == '>' || c == '^' || c == '`' || c == '{' || c == '|' || c == '}' {
			return nil, false
		}
		i++
	}
	if pstart < len(u) && pstart != i && u[pstart] != '/' {
		return nil, false
	}
	for ; i < len(u); i++ { // query and fragment: only what url.Parse accepts without complaint
		if u[i] <= ' ' || u[i] >= 0x7f || u[i] == '%' {
			return nil, false
		}
	}
	return u[pstart:min(len(u), pathEnd(u, pstart))], true
}

func pathEnd(u []byte, i int) int {
	for i < len(u) && u[i] != '?' && u[i] != '#' {
		i++
	}
	return i
}
