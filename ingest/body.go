package ingest

import (
	"compress/gzip"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
)

var gzipPool sync.Pool // *gzip.Reader

// readBody appends the request body to dst, decompressing gzip, and refuses (413) a body larger than
// MaxRequestBytes before or after decompression: a zip bomb stops at the limit, never in memory.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, dst []byte) ([]byte, error) {
	limit := int64(s.cfg.MaxRequestBytes)
	if r.ContentLength > limit {
		return dst, tooLarge(limit)
	}
	var src io.Reader = http.MaxBytesReader(w, r.Body, limit)
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip":
		zr, _ := gzipPool.Get().(*gzip.Reader)
		var err error
		if zr == nil {
			zr, err = gzip.NewReader(src)
		} else {
			err = zr.Reset(src)
		}
		if err != nil {
			return dst, s.bodyError(err, limit, "reading gzip body")
		}
		defer gzipPool.Put(zr)
		src = zr
	default:
		return dst, fail(http.StatusUnsupportedMediaType, "unsupported Content-Encoding %q (use gzip or none)", enc)
	}
	// Read one byte past the limit to tell "exactly at the limit" from "over it".
	lr := io.LimitedReader{R: src, N: limit + 1}
	if r.ContentLength > 0 && cap(dst)-len(dst) < int(r.ContentLength) {
		dst = append(dst, make([]byte, r.ContentLength)...)[:len(dst)]
	}
	for {
		if len(dst) == cap(dst) {
			dst = append(dst, 0)[:len(dst)]
		}
		n, err := lr.Read(dst[len(dst):cap(dst)])
		dst = dst[:len(dst)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return dst, s.bodyError(err, limit, "reading body")
		}
	}
	if int64(len(dst)) > limit {
		return dst, tooLarge(limit)
	}
	return dst, nil
}

func tooLarge(limit int64) *httpError {
	return fail(http.StatusRequestEntityTooLarge, "request body is larger than the limit of %d bytes", limit)
}

func (s *Server) bodyError(err error, limit int64, doing string) *httpError {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return tooLarge(limit)
	}
	return fail(http.StatusBadRequest, "%s: %s", doing, err.Error())
}
