package agent_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/keyward/keyward/agent/wire"
	"github.com/keyward/keyward/client"
)

// childRoleEnv makes the test binary act as a client process instead of
// running tests: the access-control tests need real processes with real
// uids, executables and lifetimes.
const childRoleEnv = "KEYWARD_AGENT_TEST_ROLE"

func TestMain(m *testing.M) {
	if role := os.Getenv(childRoleEnv); role != "" {
		os.Exit(runRole(role, flagArgs()))
	}
	os.Exit(m.Run())
}

// flagArgs returns the arguments after the test flags.
func flagArgs() []string {
	var args []string
	for _, a := range os.Args[1:] {
		if len(a) > 5 && a[:6] == "-test." {
			continue
		}
		args = append(args, a)
	}
	return args
}

func runRole(role string, args []string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	switch role {
	case "get": // SOCKET NAME
		c, err := client.Dial(ctx, args[0])
		if err != nil {
			fmt.Println("dial", err)
			return 0
		}
		fmt.Println(getResult(c.Get(ctx, args[1])))
	case "exec-after-connect": // SOCKET NAME NEXTBIN
		conn, c := rawClient(ctx, args[0])
		fmt.Println(getResult(c.Get(ctx, args[1])))
		moveToFD3(conn)
		env := []string{childRoleEnv + "=send-on-fd"}
		err := syscall.Exec(args[2], []string{args[2], "-test.run=^$", args[1]}, env)
		fmt.Println("exec failed:", err)
		return 1
	case "send-on-fd": // NAME; the connection is fd 3
		fmt.Println(sendOnFD3(args[0]))
	case "fork-holder": // SOCKET NAME RESULTFILE
		conn, c := rawClient(ctx, args[0])
		fmt.Println(getResult(c.Get(ctx, args[1])))
		f, _ := conn.File()
		out, err := os.OpenFile(args[2], os.O_WRONLY, 0)
		if err != nil {
			fmt.Println("result file:", err)
			return 1
		}
		self, _ := os.Executable()
		cmd := exec.Command(self, "-test.run=^$", args[1], strconv.Itoa(os.Getpid()))
		cmd.Env = []string{childRoleEnv + "=wait-then-send"}
		cmd.ExtraFiles = []*os.File{f}
		cmd.Stdout = out
		if err := cmd.Start(); err != nil {
			fmt.Println("start failed:", err)
			return 1
		}
		fmt.Println(cmd.Process.Pid)
		// Exit without waiting: the grandchild keeps the connection.
	case "wait-then-send": // NAME PARENTPID; the connection is fd 3
		parent, _ := strconv.Atoi(args[1])
		for os.Getppid() == parent {
			time.Sleep(5 * time.Millisecond)
		}
		// The parent is gone; give the reaper a moment.
		time.Sleep(50 * time.Millisecond)
		fmt.Println(sendOnFD3(args[0]))
	case "hold": // SOCKET N: keep N connections open, reconnecting each one the agent closes, until stdin closes
		n, _ := strconv.Atoi(args[1])
		stop := make(chan struct{})
		go func() { io.Copy(io.Discard, os.Stdin); close(stop) }()
		held := make(chan struct{}, n)
		for range n {
			go holdOne(args[0], held, stop)
		}
		for range n {
			<-held
		}
		fmt.Println("holding", n)
		<-stop
	case "flood": // SOCKET: connect and close as fast as possible, on every CPU, until stdin closes
		stop := make(chan struct{})
		go func() { io.Copy(io.Discard, os.Stdin); close(stop) }()
		fmt.Println("flooding")
		for range runtime.NumCPU() {
			go func() {
				for {
					if c, err := net.Dial("unix", args[0]); err == nil {
						c.Close()
					}
				}
			}()
		}
		<-stop
	case "get-many": // SOCKET NAME N: N gets, each on a new connection; prints the failures
		n, _ := strconv.Atoi(args[2])
		failed := map[string]int{}
		for range n {
			c, err := client.Dial(ctx, args[0])
			if err != nil {
				failed["dial: "+err.Error()]++
				continue
			}
			if r := getResult(c.Get(ctx, args[1])); !strings.HasPrefix(r, "ok ") {
				failed[r]++
			}
			c.Close()
		}
		fmt.Println("failed", len(failed), failed)
	default:
		fmt.Fprintln(os.Stderr, "unknown role", role)
		return 2
	}
	return 0
}

// holdOne keeps one connection open (Hello answered) until stop,
// reconnecting when the agent closes it; it signals held once.
func holdOne(socket string, held chan<- struct{}, stop <-chan struct{}) {
	first := true
	for {
		select {
		case <-stop:
			return
		default:
		}
		c, err := net.Dial("unix", socket)
		if err != nil {
			time.Sleep(time.Millisecond)
			continue
		}
		c.Write(wire.Marshal(1, &wire.Hello{Versions: []uint16{1}}))
		r := wire.NewReader(c, wire.MaxFrameSize)
		if _, _, _, err := r.ReadFrame(); err == nil && first {
			first = false
			held <- struct{}{}
		}
		r.ReadFrame() // until the agent closes it
		c.Close()
	}
}

func getResult(s *client.Secret, err error) string {
	var ce *client.Error
	if errors.As(err, &ce) {
		return "code " + ce.Code.String()
	}
	if err != nil {
		return "err " + err.Error()
	}
	return fmt.Sprintf("ok %d %s", s.Version, s.Bytes())
}

// rawClient dials the agent and returns the connection and a client bound
// to that one connection.
func rawClient(ctx context.Context, socket string) (*net.UnixConn, *client.Client) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		fmt.Println("dial", err)
		os.Exit(0)
	}
	c, err := client.New(conn)
	if err != nil {
		fmt.Println("hello", err)
		os.Exit(0)
	}
	return conn.(*net.UnixConn), c
}

// moveToFD3 duplicates the connection onto fd 3 without close-on-exec.
func moveToFD3(conn *net.UnixConn) {
	raw, _ := conn.SyscallConn()
	raw.Control(func(fd uintptr) { unix.Dup3(int(fd), 3, 0) })
}

// sendOnFD3 sends a get on fd 3 and reports what came back.
func sendOnFD3(name string) string {
	f := os.NewFile(3, "agent-conn")
	conn, err := net.FileConn(f)
	if err != nil {
		return "fileconn " + err.Error()
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write(wire.Marshal(99, &wire.Get{Name: name})); err != nil {
		return "write " + err.Error()
	}
	r := wire.NewReader(conn, wire.MaxFrameSize)
	t, _, _, err := r.ReadFrame()
	switch {
	case err == nil:
		return "answer " + t.String()
	case errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	default:
		return "closed"
	}
}
