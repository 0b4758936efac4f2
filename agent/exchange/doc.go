// Package exchange signs crypto-exchange REST and WebSocket requests with
// API keys, so that the keyward agent can sign on behalf of trading
// processes that never see the secrets. It is pure: no network, no clock,
// no randomness, no state beyond the parsed [Key]; it imports only the
// standard library. docs/signing.md in this repository describes each
// exchange's scheme with its documentation pages.
//
// # Use
//
// A process sends the agent a [Request]: method, host, path, its raw query
// and body. The agent calls [Parse], which checks the request strictly and
// returns a [Parsed]: the parameters as the exchange will read them, the
// symbols traded, the fund-movement parameters present. Policy judges the
// Parsed. The agent then calls [Sign] (or [SignTo], which reuses memory)
// with the [Key], its clock and its per-key nonce, and hands back the
// [Signed]: the headers to add and the final query and body, with the
// exchange's timestamp, nonce and signature where ccxt puts them, so the
// request is byte for byte what ccxt would send.
//
// Sign takes the Parsed, not the Request: a request cannot be signed
// without being parsed, and what is signed is exactly what policy saw.
// Parsed, Key and Info are safe for concurrent use; a Signed is not.
//
// # Exchanges
//
// [Binance] (spot, margin, wallet, USDⓈ-M and COIN-M futures; HMAC,
// Ed25519, RSA; REST and WebSocket API), [Bybit] v5 (HMAC, RSA; REST and
// the WebSocket login), [OKX] v5 (HMAC with passphrase; REST and the
// WebSocket login), [Kraken] spot REST (HMAC-SHA512), [Coinbase] Advanced
// Trade (JWT, ES256 or EdDSA; REST and WebSocket). [HMAC] is the generic
// operation for exchanges without a scheme here. [Exchange.Info] gives what
// policy needs: the symbol parameter, whether the signature covers the
// path and the parameters, and the fund-movement parameter names.
//
// # Security model
//
// Whoever holds a signed request can send it, and send it again while the
// exchange still accepts it: Binance and Bybit until timestamp plus
// receive window, OKX for 30 seconds, Coinbase's JWT for 120 seconds (to
// the same method and path, with any parameters), Kraken until a higher
// nonce is used. Policy limits what gets signed; it cannot limit what the
// exchange accepts afterwards. A WebSocket login (Binance session.logon,
// OKX, Bybit) authenticates a connection, on which the process then trades
// without asking the agent again.
//
// Binance and Bybit do not sign the path: a signature obtained for an
// order is valid for a withdrawal with the same parameters. The agent
// must therefore refuse, on a rule that does not grant withdrawals, any
// request carrying a fund-movement parameter ([Parsed].FundParams), and
// Parse refuses every way of hiding one: duplicates, names differing only
// in case, percent-encoded names, '+' and other characters servers read
// differently. docs/signing.md, "Why a trade-only rule cannot produce a
// withdrawal", has the argument.
//
// # Determinism
//
// Sign is a function of its arguments. HMAC, Ed25519 and RSA PKCS #1 v1.5
// are deterministic; ECDSA signatures use RFC 6979 with low S, which is
// what ccxt produces, so the differential tests compare them byte for
// byte. Coinbase's JWT nonce, random in ccxt, is derived from the time and
// the nonce argument.
//
// # Limitations
//
// Parameter names are [A-Za-z0-9_.-]: Kraken's bracketed form names
// (close[ordertype]) and repeated query parameters (Coinbase's
// order_status=A&order_status=B) are refused. Kraken's WebSocket token
// comes from a REST call (GetWebSocketsToken), signed like any other.
// [Key.Destroy] documents what it cannot zero.
package exchange
