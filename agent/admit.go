package agent

import (
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Connections are admitted in the accept loop from the uid the kernel
// reports (SO_PEERCRED), before any /proc work, so that a user who floods
// the socket pays for it and nobody else does:
//
//   - each uid holds at most MaxConnsPerUID connections;
//   - each uid may open connectRate connections a second (burst
//     connectBurst): attesting one costs the agent tens of microseconds of
//     /proc reads, so a connect loop could otherwise starve the accept
//     loop, and the listen backlog overflows for everyone;
//   - when MaxConns are open, a uid holding fewer than its fair share
//     (MaxConns divided by the uids connected, itself included) evicts an
//     idle connection of the uid holding the most. So strangers who take
//     every slot cannot lock out a trading process or root's status: the
//     newcomer always gets in, and the flooders lose a connection each.
//
// Refused connections are closed at once and reported in the log at most
// once a second per reason, with a count.
const (
	connectRate  = 1000
	connectBurst = 1024
)

// refusal reasons, for the log.
const (
	refusedClosing = "the agent is shutting down"
	refusedPerUID  = "this uid holds its maximum of connections"
	refusedRate    = "this uid opens connections too fast"
	refusedFull    = "every connection slot is taken and this uid holds its fair share"
)

// refusalLabels name the refusal reasons in metrics.
var refusalLabels = map[string]string{
	refusedClosing: "closing",
	refusedPerUID:  "per_uid",
	refusedRate:    "rate",
	refusedFull:    "full",
}

// accept returns the next connection the limits admit; the others are
// closed at once, with no /proc work.
func (s *Server) accept(l net.Listener) (*conn, error) {
	for {
		c, err := l.Accept()
		if err != nil {
			return nil, err
		}
		uc, ok := c.(*net.UnixConn)
		if !ok {
			s.log.Error("refusing a connection that is not a Unix socket", "remote", c.RemoteAddr())
			c.Close()
			continue
		}
		uid, err := peerUID(uc)
		if err != nil {
			s.log.Warn("closing a connection whose peer credentials cannot be read", "err", err)
			s.metrics.Refused("credentials")
			uc.Close()
			continue
		}
		cn := &conn{s: s, c: uc, uid: uid}
		if reason := s.admit(cn); reason != "" {
			s.refused.note(reason, uid)
			s.metrics.Refused(refusalLabels[reason])
			uc.Close()
			continue
		}
		return cn, nil
	}
}

// peerUID reads the uid of the process that connected c, from the kernel.
func peerUID(c *net.UnixConn) (uint32, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if credErr != nil {
		return 0, fmt.Errorf("read SO_PEERCRED: %w", credErr)
	}
	return cred.Uid, nil
}

// admit counts c against the limits above, evicting another connection if
// fairness says so, or returns why c is refused. A connection admitted
// must be released with forget once it ends.
func (s *Server) admit(c *conn) (refused string) {
	s.connsMu.Lock()
	defer s.connsMu.Unlock()
	if s.closing.Load() {
		return refusedClosing
	}
	mine := len(s.byUID[c.uid])
	if mine >= s.cfg.MaxConnsPerUID {
		return refusedPerUID
	}
	if !s.connects.allow(c.uid) {
		return refusedRate
	}
	if len(s.conns) >= s.cfg.MaxConns {
		victim := s.victimLocked(c.uid)
		if victim == nil {
			return refusedFull
		}
		s.forgetLocked(victim)
		victim.interrupt()
		s.log.Warn("connection slots are full; closed an idle connection of the uid holding the most",
			"evicted_uid", victim.uid, "for_uid", c.uid)
	}
	s.conns[c] = struct{}{}
	byUID := s.byUID[c.uid]
	if byUID == nil {
		byUID = make(map[*conn]struct{})
		s.byUID[c.uid] = byUID
	}
	byUID[c] = struct{}{}
	s.metrics.Connections(len(s.conns))
	s.wg.Add(1)
	return ""
}

// victimLocked returns an idle connection to evict so that uid can
// connect, or nil when uid already holds its fair share or no other uid
// holds more. The caller holds connsMu.
func (s *Server) victimLocked(uid uint32) *conn {
	users := len(s.byUID)
	if _, ok := s.byUID[uid]; !ok {
		users++
	}
	mine := len(s.byUID[uid])
	if mine >= s.cfg.MaxConns/users {
		return nil
	}
	var top uint32
	most := 0
	for u, cs := range s.byUID {
		if u != uid && len(cs) > most {
			top, most = u, len(cs)
		}
	}
	if most <= mine+1 {
		return nil
	}
	for c := range s.byUID[top] {
		if c.idle() {
			return c
		}
	}
	return nil
}

// forget releases a connection's slot; it is a no-op for one already
// evicted. The connection's goroutine calls it as it ends.
func (s *Server) forget(c *conn) {
	s.connsMu.Lock()
	defer s.connsMu.Unlock()
	s.forgetLocked(c)
}

func (s *Server) forgetLocked(c *conn) {
	if _, ok := s.conns[c]; !ok {
		return
	}
	delete(s.conns, c)
	s.metrics.Connections(len(s.conns))
	if cs := s.byUID[c.uid]; cs != nil {
		delete(cs, c)
		if len(cs) == 0 {
			delete(s.byUID, c.uid)
		}
	}
}

// refusalLog reports refused connections at most once a second per
// reason, so that a flood cannot flood the log.
type refusalLog struct {
	log *slog.Logger

	mu   sync.Mutex
	last map[string]time.Time
	n    map[string]int
}

func (r *refusalLog) note(reason string, uid uint32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last == nil {
		r.last, r.n = make(map[string]time.Time), make(map[string]int)
	}
	r.n[reason]++
	if now := time.Now(); now.Sub(r.last[reason]) >= time.Second {
		r.log.Warn("refused connections", "reason", reason, "count", r.n[reason], "last_uid", uid)
		r.last[reason], r.n[reason] = now, 0
	}
}
