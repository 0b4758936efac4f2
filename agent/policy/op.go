package policy

import (
	"fmt"
	"strconv"
)

// An Op is an operation a rule can grant.
type Op uint8

// The operations. The zero Op is not an operation: no rule grants it.
const (
	OpGet   Op = iota + 1 // read a secret's value
	OpList                // see a secret's name in a list
	OpWatch               // be told when a secret changes
	OpAdmin               // put, rotate or delete a secret
	OpSign                // have the agent sign exchange requests with a credential
	OpHMAC                // have the agent compute an HMAC with a secret
)

const opCount = int(OpHMAC) + 1

var opNames = [opCount]string{OpGet: "get", OpList: "list", OpWatch: "watch", OpAdmin: "admin", OpSign: "sign", OpHMAC: "hmac"}

// String returns the name used in policy files: "get", "list", "watch",
// "admin", "sign" or "hmac".
func (o Op) String() string {
	if o.valid() {
		return opNames[o]
	}
	return "op(" + strconv.Itoa(int(o)) + ")"
}

func (o Op) valid() bool { return o >= OpGet && o <= OpHMAC }

// ParseOp returns the Op named s, as written in a rule's allow list.
func ParseOp(s string) (Op, error) {
	for o, name := range opNames {
		if name != "" && name == s {
			return Op(o), nil
		}
	}
	return 0, fmt.Errorf("unknown operation %q; use get, list, watch, admin, sign or hmac", s)
}
