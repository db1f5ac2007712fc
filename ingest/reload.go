package ingest

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// notifyHUP subscribes to SIGHUP. Run calls it before serving, so that a SIGHUP sent once the edge is ready is
// never the default action (which would end the process).
func notifyHUP() chan os.Signal {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	return hup
}

// watchKeys reloads the key registry on a signal from hup and whenever the file's content changes (checked
// every KeysPollInterval), until ctx ends. A file that fails to load leaves the previous keys in place.
func (s *Server) watchKeys(ctx context.Context, hup chan os.Signal) {
	defer signal.Stop(hup)
	var tick <-chan time.Time
	if s.cfg.KeysPollInterval > 0 {
		t := time.NewTicker(s.cfg.KeysPollInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		var why string
		select {
		case <-ctx.Done():
			return
		case <-hup:
			why = "sighup"
		case <-tick:
			why = "poll"
		}
		s.reloadKeys(why)
	}
}

// reloadKeys reads the key registry file again and swaps it in when it changed and is valid; why is logged.
func (s *Server) reloadKeys(why string) {
	changed, err := s.keys.reload()
	switch {
	case err != nil:
		s.m.keyReloads.WithLabelValues("error").Inc()
		// Polling retries a broken file every interval: log each distinct failure once.
		if msg := err.Error(); msg != s.lastReloadErr {
			s.lastReloadErr = msg
			s.log.Error("key registry reload failed; keeping the previous keys", "trigger", why, "err", err)
		}
	case changed:
		s.lastReloadErr = ""
		s.m.keyReloads.WithLabelValues("changed").Inc()
		s.log.Info("key registry reloaded", "trigger", why, "keys", len(*s.keys.keys.Load()))
	default:
		s.m.keyReloads.WithLabelValues("unchanged").Inc()
	}
}
