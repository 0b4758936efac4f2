package agent

import (
	"crypto"
	"crypto/sha256"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/keyward/keyward/agent/audit"
	"github.com/keyward/keyward/agent/exchange"
	"github.com/keyward/keyward/agent/policy"
	"github.com/keyward/keyward/agent/wire"
	"github.com/keyward/keyward/store"
)

// Signing inside the agent (docs/signing.md): a caller with the sign
// permission sends an exchange request and gets back what to add to it;
// the API secret never leaves the agent. A sign request is checked in
// this order: the name, a rule granting sign on it to the caller (before
// the agent says whether the name exists), the credential, the request's
// syntax (exchange.Parse), the rule whose scope admits the request, its
// rate, the per-key budgets, and only then a nonce is taken and the
// request signed.

// A credential is an exchange API credential the cache holds: what its
// envelope's header authenticates, and the signing key, made from the
// secret when first used.
type credential struct {
	info store.CredentialInfo
	// increasingNonce: the exchange refuses a nonce not above the last
	// (Kraken), so the key's counter must grow across restarts.
	increasingNonce bool
	once            sync.Once
	key             *exchange.Key
	err             error
}

func newCredential(info *store.CredentialInfo) *credential {
	if info == nil {
		return nil
	}
	x, _ := exchange.Exchange(info.Exchange).Info()
	return &credential{info: *info, increasingNonce: x.IncreasingNonce}
}

// budgetKey names the API key in budgets and nonce marks: two secrets
// holding one key share both.
func (c *credential) budgetKey() string { return c.info.Exchange + " " + c.info.KeyID }

// signingKey returns the key made from secret, the credential's value,
// making it the first time. A key that does not match the header's
// attributes is refused: the header is what policy and audit see.
func (c *credential) signingKey(secret []byte) (*exchange.Key, error) {
	c.once.Do(func() {
		cr, err := exchange.ParseValue(exchange.Exchange(c.info.Exchange), c.info.KeyID, secret)
		if err == nil {
			c.key, err = exchange.NewKey(cr)
		}
		if err == nil && c.key.Type().Name() != c.info.KeyType {
			err = fmt.Errorf("the key is %s but the envelope says %s", c.key.Type().Name(), c.info.KeyType)
			c.key.Destroy()
			c.key = nil
		}
		c.err = err
	})
	return c.key, c.err
}

// destroy zeroes the signing key. It must not run while the key signs:
// the cache destroys it only once no request can reach it.
func (c *credential) destroy() {
	if c != nil && c.key != nil {
		c.key.Destroy()
	}
}

var errNotCredential = "not an exchange credential: store it with keyward put --exchange"

// sign answers a Sign.
func (c *conn) sign(out []byte, id uint32, pol *policy.Policy, m *wire.Sign) []byte {
	s := c.s
	if refused, ok := c.validName(out, id, "sign", m.Name); !ok {
		return refused
	}
	gate := pol.Decide(c.peer, policy.OpSign, m.Name)
	if !gate.Allowed {
		_, refused, _ := c.admit(out, id, "sign", m.Name, gate)
		return refused
	}

	s.mu.RLock()
	v, refused := c.held(out, id, "sign", m.Name, m.Version, gate)
	var cred *credential
	var version uint32
	if v != nil {
		cred, version = v.cred, v.version
	}
	s.mu.RUnlock()
	switch {
	case v == nil:
		return refused
	case cred == nil:
		return c.refuse(out, id, "sign", m.Name, version, gate, wire.CodeBadRequest, errNotCredential)
	}

	req := exchange.Request{Method: m.Method, Host: m.Host, Path: m.Path, Query: string(m.Query), Body: m.Body,
		RecvWindow: time.Duration(m.RecvWindowMS) * time.Millisecond}
	parsed, err := exchange.Parse(exchange.Exchange(cred.info.Exchange), &req)
	if err != nil {
		out = c.refuse(out, id, "sign", m.Name, version, gate, wire.CodeBadRequest, err.Error())
		c.rec.ev.Signed = &audit.Signed{Exchange: cred.info.Exchange, Method: clipText(m.Method), Path: clipText(m.Path)}
		return out
	}
	asked := &audit.Signed{Exchange: cred.info.Exchange, Method: parsed.Method, Path: clipText(parsed.Path), Params: paramNames(parsed)}
	d, refused, ok := c.admit(out, id, "sign", m.Name, pol.DecideSign(c.peer, m.Name, parsed))
	if !ok {
		c.rec.ev.Version, c.rec.ev.Signed = version, asked
		return refused
	}
	if over, w := pol.Charge(m.Name, cred.budgetKey(), parsed.Method, parsed.Path); over != "" {
		c.auditDecision("sign", m.Name, version, audit.Deny, wire.CodeRateLimited, d)
		c.rec.ev.Reason = fmt.Sprintf("budget %q lacks the request's weight %d for key %s", over, w, cred.info.KeyID)
		c.rec.ev.Signed = asked
		return wire.AppendFrame(out, id, errorMessage(wire.CodeRateLimited))
	}
	nonce, err := s.nonces.next(cred.budgetKey(), cred.increasingNonce)
	if err != nil {
		s.log.Error("no nonce for a signature", "secret", m.Name, "err", err)
		out = c.refuse(out, id, "sign", m.Name, version, d, wire.CodeUnavailable, "the agent cannot issue a nonce for this key; see its log")
		c.rec.ev.Signed = asked
		return out
	}

	s.mu.RLock()
	defer s.mu.RUnlock()
	v, refused = c.held(out, id, "sign", m.Name, version, d) // the same version, unless pruned since
	if v == nil {
		c.rec.ev.Signed = asked
		return refused
	}
	key, err := v.cred.signingKey(v.secret.Bytes())
	if err != nil {
		s.log.Error("credential unusable", "secret", m.Name, "version", version, "err", err)
		out = c.refuse(out, id, "sign", m.Name, version, d, wire.CodeInternal, "the stored credential is unusable; see the agent's log")
		c.rec.ev.Signed = asked
		return out
	}
	sg := &c.signed
	if err := exchange.SignTo(sg, key, parsed, s.cfg.Now(), nonce); err != nil {
		out = c.refuse(out, id, "sign", m.Name, version, d, wire.CodeBadRequest, err.Error())
		c.rec.ev.Signed = asked
		return out
	}
	fields := wireFields(wireFields(c.fields[:0], sg.Headers), sg.Params)
	h := len(sg.Headers)
	answer := &wire.Signed{Version: version, Exchange: cred.info.Exchange, APIKey: key.ID(),
		Headers: fields[:h:h], Query: sg.Query, Body: sg.Body, Params: fields[h:]}
	if !sg.Expires.IsZero() {
		answer.ExpiresMS = sg.Expires.UnixMilli()
	}
	out = wire.AppendFrame(out, id, answer)
	c.fields = fields[:0]
	c.auditDecision("sign", m.Name, version, audit.Allow, 0, d)
	asked.Digest = sg.Digest
	c.rec.ev.Signed = asked
	return out
}

// wireFields appends fields to dst as wire fields.
func wireFields(dst []wire.Field, fields []exchange.Field) []wire.Field {
	for _, f := range fields {
		dst = append(dst, wire.Field{Name: f.Name, Value: string(f.Value)})
	}
	return dst
}

// paramNames returns the names of a request's parameters and its batch
// items' parameters, sorted, each once: what the audit trail keeps of
// them.
func paramNames(p *exchange.Parsed) []string {
	names := make([]string, 0, len(p.Params))
	for _, prm := range p.Params {
		names = append(names, prm.Name)
	}
	for _, item := range p.Items {
		for _, prm := range item {
			names = append(names, prm.Name)
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// macHashes and macEncodings map the wire's HMAC choices.
var (
	macHashes    = map[wire.HMACHash]crypto.Hash{wire.HashSHA256: crypto.SHA256, wire.HashSHA512: crypto.SHA512}
	macEncodings = map[wire.MACEncoding]exchange.Encoding{wire.EncodingHex: exchange.Hex, wire.EncodingBase64: exchange.Base64}
)

// hmac answers an HMAC: the MAC of the message under a plain secret, or
// under the secret of an HMAC credential (without OKX's passphrase).
func (c *conn) hmac(out []byte, id uint32, pol *policy.Policy, m *wire.HMAC) []byte {
	s := c.s
	d, refused, ok := c.authorize(out, id, pol, "hmac", policy.OpHMAC, m.Name)
	if !ok {
		return refused
	}
	asked := &audit.Signed{Digest: sha256.Sum256(m.Message)}
	s.mu.RLock()
	defer s.mu.RUnlock()
	v, refused := c.held(out, id, "hmac", m.Name, m.Version, d)
	if v == nil {
		return refused
	}
	key := v.secret.Bytes()
	if cr := v.cred; cr != nil {
		if cr.info.KeyType != exchange.HMACKey.Name() {
			return c.refuse(out, id, "hmac", m.Name, v.version, d, wire.CodeBadRequest,
				"an HMAC needs an HMAC secret, and this credential holds an "+cr.info.KeyType+" key")
		}
		cred, err := exchange.ParseValue(exchange.Exchange(cr.info.Exchange), cr.info.KeyID, key)
		if err != nil {
			s.log.Error("credential unusable", "secret", m.Name, "version", v.version, "err", err)
			return c.refuse(out, id, "hmac", m.Name, v.version, d, wire.CodeInternal, "the stored credential is unusable; see the agent's log")
		}
		key = cred.Secret
		asked.Exchange = cr.info.Exchange
	}
	mac, err := exchange.HMAC(macHashes[m.Hash], macEncodings[m.Encoding], key, m.Message)
	if err != nil {
		return c.refuse(out, id, "hmac", m.Name, v.version, d, wire.CodeInternal, err.Error())
	}
	out = wire.AppendFrame(out, id, &wire.MAC{Version: v.version, MAC: string(mac)})
	c.auditDecision("hmac", m.Name, v.version, audit.Allow, 0, d)
	c.rec.ev.Signed = asked
	return out
}

// describe answers a Describe: what is not secret of a credential, to a
// caller that may sign or MAC with it.
func (c *conn) describe(out []byte, id uint32, pol *policy.Policy, m *wire.Describe) []byte {
	s := c.s
	if refused, ok := c.validName(out, id, "describe", m.Name); !ok {
		return refused
	}
	d := pol.Decide(c.peer, policy.OpSign, m.Name)
	if !d.Allowed {
		d = pol.Decide(c.peer, policy.OpHMAC, m.Name)
	}
	d, refused, ok := c.admit(out, id, "describe", m.Name, d)
	if !ok {
		return refused
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	v, refused := c.held(out, id, "describe", m.Name, 0, d)
	switch {
	case v == nil:
		return refused
	case v.cred == nil:
		return c.refuse(out, id, "describe", m.Name, v.version, d, wire.CodeBadRequest, errNotCredential)
	}
	c.auditDecision("describe", m.Name, v.version, audit.Allow, 0, d)
	return wire.AppendFrame(out, id, &wire.Described{Version: v.version, Exchange: v.cred.info.Exchange,
		APIKey: v.cred.info.KeyID, KeyType: v.cred.info.KeyType})
}

// putCredential answers a PutCredential: the credential is checked with
// the exchange's rules before it is sealed, so a key the agent could not
// sign with is never stored.
func (c *conn) putCredential(out []byte, id uint32, pol *policy.Policy, m *wire.PutCredential) []byte {
	defer clear(m.Value) // the parser's copy of the secret
	d, refused, ok := c.authorize(out, id, pol, "put", policy.OpAdmin, m.Name)
	if !ok {
		return refused
	}
	info, err := CheckCredential(m.Exchange, m.APIKey, m.Value)
	if err != nil {
		return c.adminError(out, id, "put", m.Name, d, wire.CodeBadRequest, err.Error()+"; nothing was stored", nil)
	}
	return c.storePut(out, id, d, m.Name, m.Value, m.Flags, m.Expires, m.Grace, info)
}

// CheckCredential checks that the exchange takes value (a secret, or for
// OKX the secret, a line feed and the passphrase) as an API secret for the
// key id, and returns the attributes to store with it. Its errors never
// hold secret bytes.
func CheckCredential(x, keyID string, value []byte) (*store.CredentialInfo, error) {
	if _, ok := exchange.Exchange(x).Info(); !ok {
		return nil, fmt.Errorf("the agent does not sign for exchange %q (it signs for %v)", x, exchange.Exchanges())
	}
	cred, err := exchange.ParseValue(exchange.Exchange(x), keyID, value)
	if err != nil {
		return nil, err
	}
	key, err := exchange.NewKey(cred)
	if err != nil {
		return nil, err
	}
	defer key.Destroy()
	return &store.CredentialInfo{Exchange: x, KeyID: keyID, KeyType: key.Type().Name()}, nil
}
