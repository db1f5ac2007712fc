package processor

import "github.com/twmb/franz-go/pkg/kgo"

// kafkaOpts returns a Kafka client's options: the seed brokers, KafkaConnOpts (TLS, SASL), then opts. Every
// client the processor makes starts from it, so a secured Kafka is reached the same way everywhere.
func (c Config) kafkaOpts(opts ...kgo.Opt) []kgo.Opt {
	return append(append([]kgo.Opt{kgo.SeedBrokers(c.Brokers...)}, c.KafkaConnOpts...), opts...)
}
