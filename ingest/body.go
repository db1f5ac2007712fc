package ingest

import (
	"compress/gzip"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

var gzipPool sync.Pool // *gzip.Reader

// bodyStep is the request memory a body reserves at a time as it arrives: a client that announces a large body
// and then idles holds one step, not its announced length.
const bodyStep = 64 << 10

// readBody appends the request body to dst, decompressing gzip, and refuses (413) a body larger than limit
// before or after decompression: a zip bomb stops at the limit, never in memory. The bytes are reserved from b
// (the key's quota and the edge's budget) as they arrive, and the body must keep arriving at -min-body-rate
// after -body-read-grace: a slow body gets 503 (the sender retries it), never 408 (which Chromium resends at once).
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, dst []byte, limit int64, b *budget) ([]byte, *httpError) {
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
	// The first step: the announced length when it is small (one reservation for most requests).
	first := int64(bodyStep)
	if r.ContentLength >= 0 && r.ContentLength < first && r.Header.Get("Content-Encoding") == "" {
		first = r.ContentLength + 1
	}
	if herr := b.growTo(first); herr != nil {
		return dst, herr
	}
	// A small announced body holds at most one step and is bounded by ReadTimeout: pacing it would cost more
	// (a deadline per read) than it saves.
	pace := pacer{off: true}
	if r.ContentLength < 0 || r.ContentLength > bodyStep || r.Header.Get("Content-Encoding") != "" {
		pace = s.newPacer(w)
	}
	// Read one byte past the limit to tell "exactly at the limit" from "over it".
	lr := io.LimitedReader{R: src, N: limit + 1}
	base := len(dst)
	for {
		read := int64(len(dst) - base)
		if read >= b.held {
			// The reservation is used up: take another step (doubling, so a 16 MiB body takes a few).
			if herr := b.growTo(min(b.held+max(bodyStep, b.held/2), limit+1)); herr != nil {
				return dst, herr
			}
		}
		if len(dst) == cap(dst) {
			dst = append(dst, 0)[:len(dst)]
		}
		window := min(cap(dst)-len(dst), int(b.held-read))
		pace.before(read, window)
		n, err := lr.Read(dst[len(dst) : len(dst)+window])
		dst = dst[:len(dst)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				s.m.slowBodies.Inc()
				w.Header().Set("Connection", "close")
				return dst, s.unavailable("request body arrived too slowly, retry later")
			}
			return dst, s.bodyError(err, limit, "reading body")
		}
	}
	if int64(len(dst)-base) > limit {
		return dst, tooLarge(limit)
	}
	return dst, nil
}

// pacer moves the connection's read deadline as the body arrives: the body may take -body-read-grace plus the
// time -min-body-rate needs for what has arrived and the next read's window (so after the grace its average
// rate must stay at the minimum), and never more than ReadTimeout from the start of the body (http.Server's own
// bound, which a deadline set here replaces).
type pacer struct {
	rc       *http.ResponseController
	start    time.Time
	grace    time.Duration
	rate     int64
	deadline time.Time // the request's ReadTimeout bound
	off      bool
}

func (s *Server) newPacer(w http.ResponseWriter) pacer {
	if s.cfg.MinBodyRate <= 0 {
		return pacer{off: true}
	}
	now := time.Now()
	return pacer{rc: http.NewResponseController(w), start: now, grace: s.cfg.BodyReadGrace,
		rate: int64(s.cfg.MinBodyRate), deadline: now.Add(s.cfg.ReadTimeout)}
}

// before sets the deadline for reading window more bytes after read.
func (p *pacer) before(read int64, window int) {
	if p.off {
		return
	}
	d := p.start.Add(p.grace + time.Duration((read+int64(window))*int64(time.Second)/p.rate))
	if d.After(p.deadline) {
		d = p.deadline
	}
	if err := p.rc.SetReadDeadline(d); err != nil {
		p.off = true // not a net/http connection (benchmarks): nothing to pace
	}
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
