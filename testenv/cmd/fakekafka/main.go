// Command fakekafka runs an in-memory kfake broker on 127.0.0.1:9092. It exists only for `make run` on a machine
// without Java, where the real Apache Kafka broker cannot start. It keeps nothing on disk, and it is never used by
// `make test`: the test suite always runs against the real broker.
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/twmb/franz-go/pkg/kfake"
)

func main() {
	port := flag.Int("port", 9092, "port to listen on (127.0.0.1)")
	flag.Parse()

	c, err := kfake.NewCluster(kfake.Ports(*port), kfake.NumBrokers(1))
	if err != nil {
		fmt.Fprintf(os.Stderr, "fakekafka: starting kfake on port %d: %v\n", *port, err)
		os.Exit(1)
	}
	slog.Warn("fakekafka: in-memory kfake broker, NOT Apache Kafka: data is lost on exit", "addrs", c.ListenAddrs())

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	c.Close()
}
