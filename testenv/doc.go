// Package testenv starts and reaches the real services signalstage runs against on this machine: an Apache Kafka
// broker (KRaft, from the Maven Central jars) and a ClickHouse server (Debian's clickhouse-server), both on loopback.
//
// The services themselves are started by services.sh (`make up`); this package gives integration tests a handle
// on them: Kafka with a unique topic prefix per test, ClickHouse with a unique database per test, both removed
// when the test ends. Integration tests never skip: a service that does not answer fails the test with a message
// that says how to start it.
package testenv
