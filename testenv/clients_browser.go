package testenv

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// analytics.js (@segment/analytics-next) in a real headless Chromium, driven from Go with chromedp. chromedp
// rather than playwright-core: it speaks the DevTools protocol from the test process itself, so there is no
// second runtime (node) between the test and the browser, no browser download, and the Go test can watch every
// request the page makes (to prove the run stayed offline) with one listener.

//go:embed clients/page.html
var browserPage []byte

// BrowserResult is what analytics.js did in the page, beyond ClientResult.
type BrowserResult struct {
	ClientResult
	// PageOrigin is the origin the page was served from (the sender's Origin header).
	PageOrigin string
	// Attempts are the library's own fetches to the target, in order, with the status each got (-1: the fetch
	// failed, e.g. a CORS refusal).
	Attempts []BrowserAttempt
	// Requested lists every URL Chromium requested (page, bundle, target, and anything else), in order.
	Requested []string
	UserAgent string
}

// BrowserAttempt is one fetch analytics.js made.
type BrowserAttempt struct {
	URL    string   `json:"url"`
	IDs    []string `json:"ids"`
	Status int      `json:"status"`
	Error  string   `json:"error"`
}

// ChromiumPath returns $SIGNALSTAGE_CHROMIUM, else /usr/bin/chromium.
func ChromiumPath() string {
	if p := os.Getenv(EnvChromium); p != "" {
		return p
	}
	return "/usr/bin/chromium"
}

// RunBrowserClient serves a page that loads analytics.js from node_modules (the UMD bundle, no CDN: the CDN
// settings are given inline) from its own origin, opens it in headless Chromium, and sends cfg.Calls to
// cfg.BaseURL, a different origin, so the browser's CORS rules apply. With batching, analytics.js uses its
// batching delivery strategy (POST /v1/b, cfg.FlushAt events per request); otherwise one request per call on
// the short routes /v1/t, /v1/p, /v1/i, /v1/s, /v1/g, /v1/a. It returns once every call was delivered or given
// up (or cfg.Timeout passed). The error wraps ErrUndelivered when any call was not delivered.
func RunBrowserClient(ctx context.Context, cfg ClientConfig, batching bool) (BrowserResult, error) {
	if err := cfg.validate(); err != nil {
		return BrowserResult{}, err
	}
	bundles, err := clientPath("npm", "node_modules", "@segment", "analytics-next", "dist", "umd")
	if err != nil {
		return BrowserResult{}, err
	}
	chromium := ChromiumPath()
	if _, err := os.Stat(chromium); err != nil {
		return BrowserResult{}, fmt.Errorf("%w (%s missing)", ErrClientsMissing, chromium)
	}
	mux := http.NewServeMux()
	mux.Handle("/analytics-next/bundles/", http.StripPrefix("/analytics-next/bundles/", http.FileServer(http.Dir(bundles))))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(browserPage)
	})
	page := httptest.NewServer(mux)
	defer page.Close()

	userData, err := os.MkdirTemp("", "signalstage-chromium-")
	if err != nil {
		return BrowserResult{}, fmt.Errorf("making chromium's user data dir: %w", err)
	}
	defer os.RemoveAll(userData)

	ctx, cancel := context.WithTimeout(ctx, cfg.timeout())
	defer cancel()
	// The flags this machine's Chromium needs headless (see the project's notes on the machine), a fresh
	// profile, and no name resolution: the page and the target are IP literals, so anything else the library
	// tried to reach (cdn.segment.com) fails at once instead of hanging, and shows up in Requested.
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromium),
		chromedp.UserDataDir(userData),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"),
	)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(alloc)
	defer cancelBrowser()

	var mu sync.Mutex
	var requested []string
	// Listen starts the browser; chromedp enables the network domain on every tab it opens.
	if err := chromedp.Listen(bctx, func(ev any) {
		if e, ok := ev.(*network.EventRequestWillBeSent); ok {
			mu.Lock()
			requested = append(requested, e.Request.Method+" "+e.Request.URL)
			mu.Unlock()
		}
	}); err != nil {
		return BrowserResult{}, fmt.Errorf("starting chromium (%s): %w", chromium, err)
	}

	in := map[string]any{"host": strings.TrimSuffix(cfg.BaseURL, "/"), "writeKey": cfg.WriteKey, "calls": cfg.Calls,
		"batching": batching, "timeoutMs": (cfg.timeout() - 5*time.Second).Milliseconds()}
	switch {
	case cfg.MaxRetries < 0:
		in["maxRetries"] = 0
	case cfg.MaxRetries > 0:
		in["maxRetries"] = cfg.MaxRetries
	}
	if cfg.FlushAt > 0 {
		in["flushAt"] = cfg.FlushAt
	}
	arg, err := json.Marshal(in)
	if err != nil {
		return BrowserResult{}, fmt.Errorf("encoding the calls: %w", err)
	}
	var out struct {
		ClientResult
		Settled   bool             `json:"settled"`
		Attempts  []BrowserAttempt `json:"attempts"`
		UserAgent string           `json:"userAgent"`
	}
	err = chromedp.Do(bctx, chromedp.Navigate(page.URL+"/"))
	if err == nil {
		var raw []byte
		raw, err = chromedp.Run(bctx, chromedp.Evaluate[[]byte]("run("+string(arg)+")", chromedp.EvalAwaitPromise))
		if err == nil {
			err = json.Unmarshal(raw, &out)
		}
	}
	pu, _ := url.Parse(page.URL)
	mu.Lock()
	res := BrowserResult{ClientResult: out.ClientResult, PageOrigin: pu.Scheme + "://" + pu.Host, Attempts: out.Attempts,
		Requested: append([]string(nil), requested...), UserAgent: out.UserAgent}
	mu.Unlock()
	if err != nil {
		return res, fmt.Errorf("running analytics.js in chromium: %w", err)
	}
	if out.Failed > 0 || !out.Settled {
		return res, fmt.Errorf("analytics.js: %w: %d failed: %s", ErrUndelivered, out.Failed, strings.Join(out.Errors, "; "))
	}
	return res, nil
}
