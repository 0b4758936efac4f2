package wire

import (
	"bytes"
	"encoding/hex"
	"os"
	"reflect"
	"strings"
	"testing"
)

// TestProtocolExamples checks the worked examples in docs/protocol.md
// against this package, so the page and the code cannot drift apart.
func TestProtocolExamples(t *testing.T) {
	doc, err := os.ReadFile("../../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		id   uint32
		m    Message
		hex  string
	}{
		{"hello", 1, &Hello{Versions: []uint16{Version1}}, "000000080100000001010001"},
		{"hello_ok", 1, &HelloOK{Version: Version1, Agent: "keyward 0.1.0"}, "00000015810000000100010d6b65797761726420302e312e30"},
		{"get", 2, &Get{Name: "binance/mm-prod"}, "0000001902000000020f62696e616e63652f6d6d2d70726f6400000000"},
		{"secret", 2, &Secret{Name: "binance/mm-prod", Version: 3, Expires: 1767225600, Value: []byte("k3y-s3cr3t-v4lue")},
			"0000003582000000020f62696e616e63652f6d6d2d70726f6400000003000000006955b900000000106b33792d7333637233742d76346c7565"},
		{"get-refused", 3, &Get{Name: "okx/exec", Version: 2}, "000000120200000003086f6b782f6578656300000002"},
		{"denied", 3, &Error{Code: CodeDenied, Message: CodeDenied.Message()},
			"00000028ff000000030002001f6163636573732064656e696564206f72206e6f207375636820736563726574"},
		{"unknown-operation", 4, &Error{Code: CodeBadRequest, Message: "unknown operation"},
			"0000001aff0000000400050011756e6b6e6f776e206f7065726174696f6e"},
		{"sign", 5, &Sign{Name: "binance/mm", Method: "GET", Host: "api.binance.com", Path: "/api/v3/account", Query: []byte{}, Body: []byte{}},
			"000000450b000000050a62696e616e63652f6d6d00000000034745540f6170692e62696e616e63652e636f6d000f2f6170692f76332f6163636f756e74000000000000000000000000"},
		{"signed", 5, &Signed{Version: 1, Exchange: "binance", APIKey: "demo-key",
			Headers: []Field{{Name: "X-MBX-APIKEY", Value: "demo-key"}}, Params: []Field{}, Body: []byte{}, ExpiresMS: 1767225610000,
			Query: []byte("timestamp=1767225600000&recvWindow=10000&signature=145a2e794fb1e41426a0b66ac3bbd4623af4014549b9af44afa3c8015894fb05")},
			"000000b78c00000005000000010762696e616e6365000864656d6f2d6b6579010c582d4d42582d4150494b4559000864656d6f2d6b65790000007374696d657374616d703d31373637323235363030303030267265637657696e646f773d3130303030267369676e61747572653d3134356132653739346662316534313432366130623636616333626264343632336166343031343534396239616634346166613363383031353839346662303500000000000000019b76dacf10"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want, err := hex.DecodeString(tc.hex)
			if err != nil {
				t.Fatal(err)
			}
			if got := Marshal(tc.id, tc.m); !bytes.Equal(got, want) {
				t.Errorf("Marshal(%d, %v) = %x, want %x", tc.id, tc.m, got, want)
			}
			if id, m, err := Parse(want); err != nil || id != tc.id || !reflect.DeepEqual(m, tc.m) {
				t.Errorf("Parse(%x) = %d, %v, %v, want %d, %v, nil", want, id, m, err, tc.id, tc.m)
			}
			if !strings.Contains(string(doc), "`"+tc.hex+"`") {
				t.Errorf("docs/protocol.md lacks the %s example `%s`", tc.name, tc.hex)
			}
		})
	}
	if _, _, err := Parse(raw("000000057e00000004")); err == nil {
		t.Errorf("Parse(000000057e00000004) = nil error, want unknown type")
	}
}
