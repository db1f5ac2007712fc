package ingest

import (
	"net/http"
	"time"
)

// usage enforces monthly limits per key.
type usage struct{}

func (u *usage) check(k *Key, now time.Time, h http.Header) *httpError { return nil }

func (u *usage) add(k *Key, now time.Time, n int64) {}
