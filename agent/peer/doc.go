// Package peer identifies the process at the other end of a Unix stream
// socket from what the kernel says about it, never from what the process
// sends, and re-checks that identity before each answer. It is Linux-only.
// docs/attestation.md in this repository is the operator-facing summary.
//
// # What is read, and when
//
// [Attest] runs at accept, before a byte is read from the connection. It
// takes from the socket SO_PEERCRED (pid, uid, gid as of connect) and
// SO_PEERPIDFD, a pidfd naming the connecting process itself rather than its
// PID number. Then it reads /proc/PID: supplementary groups, the executable's
// path and file identity (device, inode, size, mtime, ctime) and the systemd
// unit from the cgroup, and keeps /proc/PID open. Last, it checks through
// the pidfd that the process is still alive: /proc/PID could otherwise have
// belonged to another process that got the PID after the peer exited. UID and GID come from SO_PEERCRED
// only and are authoritative; the groups, path and unit are as of [Attest].
//
// [Peer.Verify] runs before each answer. It stats "exe" through the
// /proc/PID directory opened at attest time and compares device and inode
// with the attested ones. That directory pins the process as a pidfd does:
// once the process is gone (a zombie included), lookups through it fail,
// even after the PID is reused. A peer that exited, even if a forked child
// still holds the connection, gets [ErrGone]; one that exec'd another
// program gets [ErrExeChanged].
//
// [Peer.ExeSHA256] hashes the executable lazily, through a shared [Hasher]
// that caches by file identity, so each binary is read once.
//
// # Units
//
// The unit is the first component of the cgroup path (the cgroup v2 line,
// else the cgroup v1 name=systemd line) that ends in ".service" or ".scope".
// Only root can place a process in a system unit, so a unit name is the
// strongest selector. A user's own units live below user@UID.service, which
// is then the unit reported: they can never pass for a system unit. The
// root cgroup, or a path with no such component, gives "". Cgroup paths are
// relative to the agent's cgroup namespace: run the agent in the host's.
//
// # Limits
//
// Without SO_PEERPIDFD (kernels before 6.5, such as Debian 12's stock 6.1)
// the PID is pinned by its start time from /proc/PID/stat instead, and the
// effective UID and GID in /proc/PID/status must match SO_PEERCRED's. That
// is weaker: a PID recycled between connect and [Attest] to a process of
// the same user and group goes unnoticed, start times have clock-tick
// resolution. [Peer.Verify] is as strong and as cheap as with a pidfd,
// since it goes through the /proc/PID directory opened at attest time.
//
// The identity is of the process that called connect. While it lives and
// runs the same file, any process it hands the connection to (fork, fd
// passing) speaks with its identity.
//
// The executable path and hash name a file, not the code running in the
// process: whoever can run a binary as some user can also inject code into
// it (LD_PRELOAD, ptrace). Rules on path or hash mean something only
// together with the user or the unit. Paths are as the agent sees them: a
// deleted binary keeps the kernel's " (deleted)" suffix, and a path that
// does not name the same file in the agent's mount namespace (a process
// running in a private mount namespace, which an unprivileged user can
// create) gets " (unreachable)", so path rules cannot match either.
//
// Files over the [Hasher]'s size cap are not hashed ([ErrTooLarge]).
//
// Reading another user's /proc/PID/exe needs root or CAP_SYS_PTRACE, and the
// agent must see the peers' PID namespace. Root, or anyone who can ptrace
// the agent, defeats all of this.
//
// # Concurrency
//
// A [Peer] and a [Hasher] are safe for concurrent use.
package peer
