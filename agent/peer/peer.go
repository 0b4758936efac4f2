package peer

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

var (
	// ErrGone means the process that connected has exited, or that its PID
	// now names another process.
	ErrGone = errors.New("peer: process exited or its PID was reused")

	// ErrExeChanged means the process no longer runs the executable it ran
	// when attested: it called exec, or the file changed while being hashed.
	ErrExeChanged = errors.New("peer: process is running another executable")
)

// testOnlyNoPeerPIDFD makes Attest act as on a kernel without SO_PEERPIDFD.
var testOnlyNoPeerPIDFD bool

// A Peer is the process at the other end of a connection, as attested by
// [Attest]. Its accessors return what was read then; [Peer.Verify] checks it
// still holds. A Peer is safe for concurrent use. Close it with the
// connection.
type Peer struct {
	pid      int32
	uid, gid uint32
	groups   []uint32
	exe      string
	unit     string

	// pidfd pins the process; it is -1 on kernels without SO_PEERPIDFD,
	// where starttime (from /proc/PID/stat) does instead. mu keeps Close
	// from closing pidfd while it is in use.
	mu        sync.RWMutex
	closed    bool
	pidfd     int
	starttime uint64
	// procfd is /proc/PID opened at attest time. Like a pidfd it pins the
	// process: once that process is gone, lookups through it fail with
	// ESRCH or ENOENT even if the PID is reused, so Verify needs one
	// fstatat of "exe" through it and no separate liveness check.
	procfd int

	exePath, statPath string // /proc/PID/exe and /proc/PID/stat
	dev, ino          uint64 // of the executable at attest time

	hasher   *Hasher
	hashOnce sync.Once
	hash     [32]byte
	hashErr  error
}

// Attest identifies the peer of c. Call it at accept, before reading from c.
//
// It reads SO_PEERCRED (pid, uid, gid as of connect) and SO_PEERPIDFD from
// the socket, then the peer's supplementary groups, executable path and
// identity, and systemd unit from /proc/PID, and finally checks through the
// pidfd that the process is still alive, so none of it came from a process
// that got the PID later. Where the kernel lacks SO_PEERPIDFD (before
// Linux 6.5), the process start time from /proc/PID/stat pins it instead,
// and the effective UID and GID in /proc/PID/status must equal those from
// SO_PEERCRED, so a PID recycled before Attest read it can at worst name
// another process of the same user and group.
//
// The error wraps [ErrGone] if the peer exited before or during Attest, and
// [ErrExeChanged] if it exec'd during Attest. h computes [Peer.ExeSHA256].
// Attest reads /proc and stats the peer's executable, which can be slow on
// some file systems: call it on the connection's goroutine, not in the
// accept loop.
func Attest(c *net.UnixConn, h *Hasher) (*Peer, error) {
	if c == nil || h == nil {
		return nil, errors.New("peer: Attest needs a connection and a Hasher")
	}
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("peer: %w", err)
	}
	var (
		cred           *unix.Ucred
		pidfd          = -1
		credErr, fdErr error
	)
	err = raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if credErr != nil {
			return
		}
		if testOnlyNoPeerPIDFD {
			fdErr = unix.ENOPROTOOPT
			return
		}
		pidfd, fdErr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PEERPIDFD)
	})
	switch {
	case err != nil:
		return nil, fmt.Errorf("peer: %w", err)
	case credErr != nil:
		return nil, fmt.Errorf("peer: read SO_PEERCRED: %w", credErr)
	case cred.Pid <= 0:
		if fdErr == nil {
			unix.Close(pidfd)
		}
		return nil, errors.New("peer: the kernel gave no PID for the peer (another PID namespace?)")
	}
	p := &Peer{
		pidfd:    -1,
		procfd:   -1,
		pid:      cred.Pid,
		uid:      cred.Uid,
		gid:      cred.Gid,
		hasher:   h,
		exePath:  "/proc/" + strconv.Itoa(int(cred.Pid)) + "/exe",
		statPath: "/proc/" + strconv.Itoa(int(cred.Pid)) + "/stat",
	}
	switch {
	case fdErr == nil:
		p.pidfd = pidfd
	case errors.Is(fdErr, unix.ENOPROTOOPT):
		// Old kernel: pin by start time below.
	case errors.Is(fdErr, unix.EINVAL), errors.Is(fdErr, unix.ESRCH):
		return nil, fmt.Errorf("%w (pid %d)", ErrGone, p.pid)
	default:
		return nil, fmt.Errorf("peer: read SO_PEERPIDFD: %w", fdErr)
	}
	if err := p.read(); err != nil {
		p.Close()
		if errors.Is(err, ErrGone) || errors.Is(err, ErrExeChanged) {
			return nil, fmt.Errorf("%w (pid %d)", err, p.pid)
		}
		return nil, fmt.Errorf("peer: attest pid %d: %w", p.pid, err)
	}
	return p, nil
}

// read fills in what comes from /proc/PID and then checks the process is
// still the one pinned, so everything read belongs to it.
func (p *Peer) read() error {
	dir := strings.TrimSuffix(p.statPath, "stat")
	// Opened first: the liveness check at the end proves it is this
	// process's directory.
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return p.gone(err)
	}
	p.procfd = fd
	if p.pidfd < 0 {
		b, err := readProc(p.statPath, nil)
		if err != nil {
			return p.gone(err)
		}
		if p.starttime, err = parseStartTime(b); err != nil {
			return err
		}
	}
	status, err := readProc(dir+"status", nil)
	if err != nil {
		return p.gone(err)
	}
	if p.groups, err = parseGroups(status); err != nil {
		return err
	}
	if p.pidfd < 0 {
		uid, err := parseEffectiveID(status, "Uid")
		if err != nil {
			return err
		}
		gid, err := parseEffectiveID(status, "Gid")
		if err != nil {
			return err
		}
		if uid != p.uid || gid != p.gid {
			return fmt.Errorf("%w: /proc shows uid %d gid %d, the socket %d and %d", ErrGone, uid, gid, p.uid, p.gid)
		}
	}
	// Stat, readlink, stat: the path and the identity are of one file.
	var st, st2 unix.Stat_t
	if err := p.statExe(&st); err != nil {
		return p.gone(err)
	}
	exe, err := os.Readlink(p.exePath)
	if err != nil {
		return p.gone(err)
	}
	if err := p.statExe(&st2); err != nil {
		return p.gone(err)
	}
	if st.Dev != st2.Dev || st.Ino != st2.Ino {
		return ErrExeChanged
	}
	p.dev, p.ino = st.Dev, st.Ino
	p.exe = visiblePath(exe, &st)
	cgroup, err := readProc(dir+"cgroup", nil)
	if err != nil {
		return p.gone(err)
	}
	p.unit = parseUnit(cgroup)
	return p.alive()
}

// visiblePath returns exe, the kernel's path of an executable with stat st,
// marked " (unreachable)" if it does not name that file in the agent's mount
// namespace: a process in its own mount namespace can run any file from a
// path that names a trusted binary here. The kernel's " (deleted)" mark is
// kept as it is.
func visiblePath(exe string, st *unix.Stat_t) string {
	if strings.HasSuffix(exe, " (deleted)") {
		return exe
	}
	var here unix.Stat_t
	if unix.Stat(exe, &here) != nil || here.Dev != st.Dev || here.Ino != st.Ino {
		return exe + " (unreachable)"
	}
	return exe
}

// errClosed is returned after Close.
var errClosed = errors.New("peer: use after Close")

// alive returns nil if the attested process is still running, or ErrGone.
func (p *Peer) alive() error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	switch {
	case p.closed:
		return errClosed
	case p.pidfd >= 0:
		return signalResult(unix.PidfdSendSignal(p.pidfd, 0, nil, 0))
	}
	var buf [2048]byte // a stat line is at most about 1100 bytes
	b, err := readProc(p.statPath, buf[:0])
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) {
			return ErrGone
		}
		return err
	}
	t, err := parseStartTime(b)
	if err != nil {
		return err
	}
	if t != p.starttime {
		return ErrGone
	}
	return nil
}

// signalResult interprets pidfd_send_signal(pidfd, 0): ESRCH means the
// process is gone; EPERM that it lives but the agent may not signal it.
func signalResult(err error) error {
	switch err {
	case nil, unix.EPERM:
		return nil
	case unix.ESRCH:
		return ErrGone
	}
	return fmt.Errorf("pidfd_send_signal: %w", err)
}

// statExe stats the current executable of the process.
func (p *Peer) statExe(st *unix.Stat_t) error {
	if err := unix.Stat(p.exePath, st); err != nil {
		return &os.PathError{Op: "stat", Path: p.exePath, Err: err}
	}
	return nil
}

// gone explains err, from reading /proc/PID: ErrGone if the process exited
// or is exiting (its exe and files vanish before it is reaped), else err.
// Like the other helpers it leaves the "peer: " prefix to its callers.
func (p *Peer) gone(err error) error {
	if aerr := p.alive(); aerr != nil {
		return aerr
	}
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) {
		return ErrGone
	}
	return err
}

// Verify checks, before a request is answered, that the attested process
// is still alive and still runs the attested executable (same device and
// inode). It returns nil, or an error wrapping [ErrGone] or
// [ErrExeChanged], or another error if /proc cannot be read. It costs one
// fstatat of "exe" through the /proc/PID directory opened at attest time,
// which fails once the process is gone, also after its PID is reused.
func (p *Peer) Verify() error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return errClosed
	}
	var st unix.Stat_t
	if err := unix.Fstatat(p.procfd, "exe", &st, 0); err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) {
			return ErrGone
		}
		return p.wrap("verify", err)
	}
	if st.Dev != p.dev || st.Ino != p.ino {
		return ErrExeChanged
	}
	return nil
}

// wrap returns the sentinels as they are and prefixes other errors.
func (p *Peer) wrap(op string, err error) error {
	if err == nil || errors.Is(err, ErrGone) || errors.Is(err, ErrExeChanged) || errors.Is(err, ErrTooLarge) {
		return err
	}
	return fmt.Errorf("peer: %s: %w", op, err)
}

// ExeSHA256 returns the SHA-256 of the attested executable, computed on the
// first call through the Peer's [Hasher]. It opens /proc/PID/exe, checks
// that the file opened is the attested one ([ErrExeChanged] if not) and
// that the process is still alive after hashing ([ErrGone] if not). The
// result, digest or error, is kept for later calls. Files over the Hasher's
// cap give [ErrTooLarge].
func (p *Peer) ExeSHA256() ([32]byte, error) {
	p.hashOnce.Do(func() {
		p.hash, p.hashErr = p.exeSHA256()
		p.hashErr = p.wrap("hash executable", p.hashErr)
	})
	return p.hash, p.hashErr
}

func (p *Peer) exeSHA256() ([32]byte, error) {
	f, err := os.Open(p.exePath)
	if err != nil {
		return [32]byte{}, p.gone(err)
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return [32]byte{}, err
	}
	if st.Dev != p.dev || st.Ino != p.ino {
		if err := p.alive(); err != nil {
			return [32]byte{}, err
		}
		return [32]byte{}, ErrExeChanged
	}
	sum, err := p.hasher.sum(f, &st)
	if err != nil {
		return [32]byte{}, err
	}
	if err := p.alive(); err != nil {
		return [32]byte{}, err
	}
	return sum, nil
}

// PID returns the process ID from SO_PEERCRED. Use it for logs only: the
// number may name another process by now.
func (p *Peer) PID() int32 { return p.pid }

// UID returns the user ID of the process when it connected, from
// SO_PEERCRED.
func (p *Peer) UID() uint32 { return p.uid }

// GID returns the group ID of the process when it connected, from
// SO_PEERCRED.
func (p *Peer) GID() uint32 { return p.gid }

// Groups returns a copy of the supplementary groups of the process, as read
// from /proc/PID/status at attest time.
func (p *Peer) Groups() []uint32 { return slices.Clone(p.groups) }

// Exe returns the path of the executable at attest time. A deleted or
// replaced binary keeps the kernel's " (deleted)" suffix, and a path that
// does not name the same file in the agent's mount namespace ends in
// " (unreachable)", so path rules cannot match either.
func (p *Peer) Exe() string { return p.exe }

// Unit returns the systemd service or scope unit of the process at attest
// time, or "" if it has none. A user's own units report as
// user@UID.service. See the package documentation for the rule.
func (p *Peer) Unit() string { return p.unit }

// Close releases the pidfd. Call it when the connection is closed. Verify
// fails afterwards.
func (p *Peer) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	var err error
	if p.procfd >= 0 {
		err = unix.Close(p.procfd)
		p.procfd = -1
	}
	if p.pidfd >= 0 {
		err = errors.Join(err, unix.Close(p.pidfd))
		p.pidfd = -1
	}
	return err
}

// LogValue implements [slog.LogValuer]: pid, uid, gid, exe and unit as a
// group.
func (p *Peer) LogValue() slog.Value {
	return slog.GroupValue(
		slog.Int("pid", int(p.pid)),
		slog.Uint64("uid", uint64(p.uid)),
		slog.Uint64("gid", uint64(p.gid)),
		slog.String("exe", p.exe),
		slog.String("unit", p.unit),
	)
}
