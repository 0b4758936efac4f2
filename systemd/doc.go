// Package systemd runs keyward as a systemd service: it ships the unit
// files and does the service side of the protocols systemd speaks, with
// github.com/coreos/go-systemd/v22.
//
// # Files
//
// [Files] returns keyward.service, keyward.socket, keyward-metrics.socket
// and the sysusers.d and tmpfiles.d snippets, embedded in the binary so
// that `keyward install` and the Debian package install exactly what was
// tested. The service runs as the dedicated user
// keyward with one capability, CAP_SYS_PTRACE (to read callers'
// /proc/PID/exe), under ProtectSystem=strict, PrivateNetwork=yes,
// RestrictAddressFamilies=AF_UNIX and a system call filter;
// docs/operations.md explains each decision.
//
// # Socket activation
//
// [Listeners] returns the sockets systemd passed (LISTEN_FDS): exactly one
// listening Unix stream socket for the agent, from keyward.socket, and at
// most one TCP socket named "metrics" (FileDescriptorName=), from
// keyward-metrics.socket, for the Prometheus endpoint. When none was
// passed, the agent creates its own with [agent.Listen]. So the service
// keeps PrivateNetwork=yes and RestrictAddressFamilies=AF_UNIX: systemd
// opens the TCP socket in the host's network namespace, and the agent
// only accepts on it.
//
// # Readiness, reload, stop and the watchdog
//
// A [Notifier] turns the agent's life ([agent.RunConfig] Ready and
// HealthResult) into sd_notify messages: READY=1 once the store is loaded
// and the backend answered, RELOADING=1 with MONOTONIC_USEC and READY=1
// again around a SIGHUP reload, STOPPING=1 on shutdown, STATUS= with the
// secrets served and the backend's state, and WATCHDOG=1 after every
// health check that passes and only then, so that systemd restarts an
// agent whose HSM session is wedged.
//
// # Logs
//
// Under systemd (stderr is a journal stream), [NewJournalHandler] writes
// records to the journal's native protocol with structured fields;
// operational logs carry SYSLOG_IDENTIFIER=keyward and audit events
// SYSLOG_IDENTIFIER=keyward-audit, so `journalctl -t keyward-audit` shows
// the audit trail alone.
//
// # Limitations
//
//   - Type=notify-reload (systemd 253) is not used: the units must work on
//     Debian 12 (systemd 252), so `systemctl reload` sends SIGHUP and
//     returns before the reload has finished; RELOADING=1 and READY=1 mark
//     it in the unit's state.
//   - The journal handler sends one datagram per record; it is meant for
//     the operational log and for the agent's audit goroutine, which writes
//     events in batches off the request path.
package systemd
