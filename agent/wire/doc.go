// Package wire implements version 1 of the keyward agent protocol: the frames
// and messages that trading processes and the keyward agent exchange over the
// agent's Unix stream socket. It is shared by the agent and the client so the
// two cannot drift. docs/protocol.md in this repository is the language-neutral
// specification; this comment summarises it.
//
// # Frames
//
// Every message travels in one frame. All integers are big-endian.
//
//	u32 length | u8 type | u32 id | body
//
// length counts the type, id and body bytes, so it is at least 5. A length
// below 5 or above [MaxFrameSize] is a protocol error: the reader refuses it
// before allocating anything and the connection is closed. The agent caps
// request frames lower, at [MaxRequestSize].
//
// The client picks id for each request; the agent echoes it in the response
// and answers the requests of one connection in order. Id 0 is reserved for
// messages the agent sends unprompted; clients must not use it.
//
// # Messages
//
// Requests have types 0x01–0x7F, responses 0x80–0xFF. Each has one Go type
// here, and a pointer to it implements [Message]. Each request is listed
// with its answer:
//
//	0x01 Hello       { u8 n; u16 versions[n] }           n is 1..16; first frame on a connection
//	0x81 HelloOK     { u16 version; agent str8 }
//	0x02 Get         { name str8; u32 version }          version 0 means the current one
//	0x82 Secret      { name str8; u32 version; i64 expires; value bytes32 }
//	0x03 List        {}
//	0x83 Names       { u32 n; str8 names[n] }
//	0x04 Status      {}
//	0x84 StatusOK    { u8 healthy; backend str8; u32 secrets; u64 uptime_ms; agent str8 }
//	0x05 Reload      { name str8 }                       admin
//	0x85 Reloaded    { u32 version }
//	0x06 Watch       { u8 n; str8 names[n] }             n is 1..64
//	0x86 Watching    { u8 n; u32 versions[n] }
//	0x87 Changed     { name str8; u32 version }          unasked, id 0, after Watch
//	0x07 Health      {}
//	0x88 HealthOK    { u8 backend_ok; i64 backend_since; i64 last_ok; u32 secrets;
//	                   u32 n; { name str8; u8 state; u32 serving; u32 newest } problems[n] }
//	0x08 Put         { name str8; u8 flags; i64 expires; u32 grace; value bytes32 }   admin
//	0x89 Stored      { u32 version; i64 prev_until }
//	0x09 Remove      { name str8; u32 version }          admin; version 0 removes all
//	0x8A Removed     { u32 count }
//	0x0A Prune       {}                                  admin
//	0x8B Pruned      { u32 n; { name str8; u32 version; i64 retired } versions[n] }
//	0x0B Sign        { name str8; u32 version; method str8; host str8; path str16;
//	                   query bytes32; body bytes32; u32 recv_window_ms }                 sign
//	0x8C Signed      { u32 version; exchange str8; api_key str16; u8 n; { name str8; value str16 } headers[n];
//	                   query bytes32; body bytes32; u8 m; { name str8; value str16 } params[m]; i64 expires_ms }
//	0x0C HMAC        { name str8; u32 version; u8 hash; u8 encoding; message bytes32 }   hmac
//	0x8D MAC         { u32 version; mac str16 }
//	0x0D PutCredential { name str8; u8 flags; i64 expires; u32 grace; exchange str8; api_key str16;
//	                   value bytes32 }                                                    admin; answered by Stored
//	0x0E Describe    { name str8 }                                                        sign or hmac
//	0x8E Described   { u32 version; exchange str8; api_key str16; key_type str8 }
//	0xFF Error       { u16 code; message str16 }         answers any request
//
// str8 is a u8 length and that many bytes, str16 a u16 length, bytes32 a
// u32 length of at most [MaxSecretSize]. Booleans are exactly 0 or 1.
// Bodies are strict: a field out of range or a trailing byte makes the whole
// frame invalid, so every frame that parses re-encodes to the same bytes.
// Each message describes its body once, in one method that sizes, encodes
// and decodes it (codec.go), so the three cannot disagree.
//
// # Errors
//
// An [Error] carries a stable [Code] and a human message, by default the
// code's fixed [Code.Message]. Peers branch on the code, never on the text.
// A caller without access to a secret gets [CodeDenied] whether or not the
// secret exists. Codes this package does not know still parse: a newer agent
// may add them.
//
// # Compatibility
//
// An unknown request type is answered with an [Error] of [CodeBadRequest] and
// the connection stays open. The agent never sends a client a message type it
// did not ask for: later additions, such as watch notifications on id 0, are
// opted into by a request. New operations get new type bytes; only an
// incompatible change needs a new protocol version, negotiated by [Hello].
//
// # Using this package
//
// [AppendFrame] and [Marshal] encode; [Parse] decodes a whole frame and
// [ParseBody] the body of one already split by a [Reader], which reads frames
// from a connection with a reused buffer. Parse failures are [*ParseError]
// values wrapping one of [ErrFrameTooSmall], [ErrFrameTooLarge],
// [ErrUnknownType] or [ErrMalformed].
//
// The functions are safe for concurrent use, and messages are plain values
// that are safe to read concurrently; a [Reader] is not. A [Secret]
// redacts its value when formatted or logged, but the value is plain memory:
// whoever holds one clears it when done.
package wire
