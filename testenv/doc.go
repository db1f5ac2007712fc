// Package testenv starts and reaches the real services signalstage runs against on this machine: an Apache Kafka
// broker (KRaft, from the Maven Central jars) and a ClickHouse server (Debian's clickhouse-server), both on loopback;
// private brokers of single tests (NewPrivateKafka, optionally with a SASL_SSL listener); and, for the cluster
// suites, a three-broker Kafka cluster and a two-shard, two-replica ClickHouse cluster with ZooKeeper
// (NewKafkaCluster, NewClickHouseCluster). See README.md.
//
// The services themselves are started by services.sh (`make up`); this package gives integration tests a handle
// on them: Kafka with a unique topic prefix per test, ClickHouse with a unique database per test, both removed
// when the test ends. Integration tests never skip: a service that does not answer fails the test with a message
// that says how to start it. (Cluster tests are selected by SIGNALSTAGE_CLUSTER=1, as `make test-cluster` sets it,
// and skip without it; with it, a cluster that does not answer fails them.)
package testenv
