package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/signalstage/signalstage/schemas/kafkaconn"
	"github.com/signalstage/signalstage/sink"
	"github.com/signalstage/signalstage/sink/console"
)

// consoleFlags are the operator console's flags (sink/console): it starts with the loader when -console-addr is
// set.
type consoleFlags struct {
	addr, loginCode, metrics, operators *string
	token                               *kafkaconn.Secret
}

func addConsoleFlags(fs *flag.FlagSet) consoleFlags {
	return consoleFlags{
		addr: fs.String("console-addr", "", "listen address of the operator console; empty disables it"),
		// A secret: env or file, never a flag's value (kafkaconn.Secret).
		token: kafkaconn.RegisterSecret(fs, "console-token", "SIGNALSTAGE_SINK_CONSOLE_TOKEN",
			"admin token operators log in to the console with, at least 16 characters (default env SIGNALSTAGE_ADMIN_TOKEN, the processor's admin token)"),
		loginCode: fs.String("console-login-code", "",
			"one-time login code for /login/once?code=... (dev setup; default: a random one, logged)"),
		operators: fs.String("console-operators-file", "",
			`JSON list of console logins limited to tenants: [{"name":..., "token_sha256":..., "tenants":[...]}]`),
		metrics: fs.String("console-metrics", "",
			"the stages' metrics for the console's health page: stage=URL, comma separated"),
	}
}

// startConsole starts the console when configured; the returned wait blocks until it has stopped (after ctx is
// cancelled, or by wait itself, which stops it). A console that cannot start fails the sink's start: an operator who asked for it should know.
func startConsole(ctx context.Context, log *slog.Logger, cfg sink.Config, f consoleFlags) (wait func(), err error) {
	if *f.addr == "" {
		return func() {}, nil
	}
	token, err := f.token.Value()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", sink.ErrConfig, err)
	}
	if token == "" {
		token = os.Getenv("SIGNALSTAGE_ADMIN_TOKEN")
	}
	token = strings.TrimSpace(token)
	metrics := map[string]string{}
	for _, kv := range strings.Split(*f.metrics, ",") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		stage, u, ok := strings.Cut(kv, "=")
		if !ok || stage == "" || !strings.HasPrefix(u, "http") {
			return nil, fmt.Errorf("%w: -console-metrics: %q is not stage=http://host:port/metrics", sink.ErrConfig, kv)
		}
		metrics[stage] = u
	}
	var ops []console.Operator
	if *f.operators != "" {
		b, err := os.ReadFile(*f.operators)
		if err == nil {
			err = json.Unmarshal(b, &ops)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: -console-operators-file: %v", sink.ErrConfig, err)
		}
	}
	srv, err := console.New(console.Config{Addr: *f.addr, Token: token, LoginCode: *f.loginCode, Operators: ops,
		Metrics: metrics, Sink: cfg, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", sink.ErrConfig, err)
	}
	log.Info("console one-time login link", "url", srv.LoginURL())
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Run(ctx); err != nil {
			log.Error("console stopped", "err", err)
		}
	}()
	return func() { cancel(); <-done }, nil
}
