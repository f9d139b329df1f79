// Package e2e holds end-to-end tests of the whole bridge on the topology
// production runs: Temporal with PostgreSQL persistence and SQL visibility,
// one process per service (localtemporal.StartCluster), and two replicas
// of the bridge. It has no code of its own.
package e2e
