package wire_test

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/keyward/keyward/agent/wire"
)

// A client encodes its requests with AppendFrame into a reused buffer.
func ExampleAppendFrame() {
	var buf []byte
	buf = wire.AppendFrame(buf[:0], 1, &wire.Hello{Versions: []uint16{wire.Version1}})
	fmt.Printf("%x\n", buf)
	buf = wire.AppendFrame(buf[:0], 2, &wire.Get{Name: "binance/mm-prod"})
	fmt.Printf("%x\n", buf)
	// Output:
	// 000000080100000001010001
	// 0000001902000000020f62696e616e63652f6d6d2d70726f6400000000
}

// The agent reads requests with a Reader capped at MaxRequestSize and
// answers each in order, echoing its id.
func ExampleReader() {
	conn := bytes.NewBuffer(wire.Marshal(1, &wire.Hello{Versions: []uint16{wire.Version1}}))
	conn.Write(wire.Marshal(2, &wire.Get{Name: "okx/exec"}))
	conn.Write([]byte{0, 0, 0, 5, 0x7e, 0, 0, 0, 3}) // an operation from the future

	r := wire.NewReader(conn, wire.MaxRequestSize)
	var out []byte
	for {
		t, id, body, err := r.ReadFrame()
		if err != nil {
			break // io.EOF, or a *ParseError: close the connection
		}
		var resp wire.Message
		switch m, err := wire.ParseBody(t, body); m.(type) {
		case *wire.Hello:
			resp = &wire.HelloOK{Version: wire.Version1, Agent: "keyward 0.1.0"}
		case *wire.Get:
			resp = &wire.Error{Code: wire.CodeDenied, Message: wire.CodeDenied.Message()}
		default:
			msg := "malformed request"
			if errors.Is(err, wire.ErrUnknownType) {
				msg = "unknown operation"
			}
			resp = &wire.Error{Code: wire.CodeBadRequest, Message: msg}
		}
		out = wire.AppendFrame(out[:0], id, resp) // and write out to the connection
		fmt.Printf("%d %v -> %v\n", id, t, resp.Type())
	}
	// Output:
	// 1 hello -> hello_ok
	// 2 get -> error
	// 3 Type(0x7e) -> error
}

// A client turns an Error response into a Go error.
func ExampleParse() {
	frame := wire.Marshal(2, &wire.Error{Code: wire.CodeDenied, Message: wire.CodeDenied.Message()})
	id, m, err := wire.Parse(frame)
	if err != nil {
		panic(err)
	}
	if e, ok := m.(*wire.Error); ok && e.Code == wire.CodeDenied {
		var err error = e
		fmt.Println(id, err)
	}
	// Output:
	// 2 agent: denied: access denied or no such secret
}
