// Frames of the keyward agent protocol, version 1 (docs/protocol.md).
//
// A message is its type name and an object of its fields, named as in the
// protocol: ['get', { name: 'binance/mm-prod', version: 0 }]. Each message
// type is described once, as a list of fields, and that description both
// encodes and decodes it, so every frame that decodes re-encodes to the
// same bytes. Decoding is strict: a length out of range, a truncated or
// trailing byte, a count or flag out of range throw a ProtocolError.
//
// Byte fields decode to Buffers of their own (never views of the frame),
// which can be zeroed; strings decode as UTF-8, and a string that is not
// UTF-8 is refused. u64 and i64 fields are BigInts.

import { BadRequest, ProtocolError } from './errors.js';

export const VERSION_1 = 1;
export const MAX_FRAME_SIZE = 1 << 20;
export const MAX_REQUEST_SIZE = 80 << 10;
export const MAX_SECRET_SIZE = 65536;
export const MAX_STR8_LEN = 255;
export const MAX_WATCH = 64;
export const MAX_SIGN_PART = 64 << 10;
export const HEADER_SIZE = 9;

// A decoder reads fields from a body, failing on the first violation.
class Decoder {
	constructor(buf, type) {
		this.buf = buf;
		this.pos = 0;
		this.type = type;
	}

	fail(what) {
		return new ProtocolError(`malformed ${this.type}: ${what}`);
	}

	take(n, field) {
		if (this.buf.length - this.pos < n) {
			throw this.fail(`${field} truncated`);
		}
		const p = this.buf.subarray(this.pos, this.pos + n);
		this.pos += n;
		return p;
	}
}

// An encoder appends fields; it sizes nothing in advance (requests are
// small and hold no secret value).
class Encoder {
	constructor() {
		this.parts = [];
		this.size = 0;
	}

	push(b) {
		this.parts.push(b);
		this.size += b.length;
	}

	uint(n, width) {
		const b = Buffer.alloc(width);
		b.writeUIntBE(n, 0, width);
		this.push(b);
	}
}

function checkUint(v, max, field) {
	if (!Number.isInteger(v) || v < 0 || v > max) {
		throw new RangeError(`${field} must be an integer from 0 to ${max}, not ${v}`);
	}
}

// Field kinds: each encodes a value and decodes one back.
function uint(width) {
	const max = 2 ** (8 * width) - 1;
	return {
		encode(e, v, field) {
			checkUint(v, max, field);
			e.uint(v, width);
		},
		decode(d, field) {
			return d.take(width, field).readUIntBE(0, width);
		},
	};
}

function range(lo, hi) {
	return {
		...uint(1),
		decode(d, field) {
			const v = d.take(1, field)[0];
			if (v < lo || v > hi) {
				throw d.fail(`${field} is ${v}, want ${lo} to ${hi}`);
			}
			return v;
		},
	};
}

function mask(bits) {
	return {
		...uint(1),
		decode(d, field) {
			const v = d.take(1, field)[0];
			if (v & ~bits) {
				throw d.fail(`${field} 0x${v.toString(16).padStart(2, '0')} has undefined bits`);
			}
			return v;
		},
	};
}

// wide is a 64-bit integer, unsigned or signed: a BigInt.
function wide(signed) {
	return {
		encode(e, v) {
			const b = Buffer.alloc(8);
			if (signed) {
				b.writeBigInt64BE(BigInt(v));
			} else {
				b.writeBigUInt64BE(BigInt(v));
			}
			e.push(b);
		},
		decode(d, field) {
			const p = d.take(8, field);
			return signed ? p.readBigInt64BE(0) : p.readBigUInt64BE(0);
		},
	};
}

const u64 = wide(false);
const i64 = wide(true);

const bool = {
	encode(e, v) {
		e.uint(v ? 1 : 0, 1);
	},
	decode(d, field) {
		const v = d.take(1, field)[0];
		if (v > 1) {
			throw d.fail(`${field} is ${v}, want 0 or 1`);
		}
		return v === 1;
	},
};

function putLength(e, n, width, limit, field) {
	if (n > limit) {
		throw new RangeError(`${field} is ${n} bytes, limit ${limit}`);
	}
	e.uint(n, width);
}

function getLength(d, width, limit, field) {
	const n = d.take(width, field).readUIntBE(0, width);
	if (n > limit) {
		throw d.fail(`${field} length ${n}, limit ${limit}`);
	}
	return n;
}

// Strings are UTF-8 in this client: a string that is not (which the agent
// never sends: its names are ASCII, its messages UTF-8) is refused rather
// than changed, so that every frame that decodes re-encodes to the same
// bytes.
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function str(width, limit) {
	return {
		encode(e, v, field) {
			const b = Buffer.from(v, 'utf8');
			putLength(e, b.length, width, limit, field);
			e.push(b);
		},
		decode(d, field) {
			const b = d.take(getLength(d, width, limit, field), field);
			try {
				return utf8.decode(b);
			} catch {
				throw d.fail(`${field} is not UTF-8`);
			}
		},
	};
}

function bytes(limit) {
	return {
		encode(e, v, field) {
			const b = typeof v === 'string' ? Buffer.from(v, 'utf8') : v;
			putLength(e, b.length, 4, limit, field);
			e.push(b);
		},
		decode(d, field) {
			return Buffer.from(d.take(getLength(d, 4, limit, field), field)); // a copy
		},
	};
}

// list is a u8 count of lo to hi elements or, wide, a u32 count of any
// number the bytes left can hold: each element takes one byte at least, so
// a count is checked before anything is allocated for it.
function list(elem, { lo = 0, hi = 255, wide = false } = {}) {
	return {
		encode(e, v, field) {
			if (wide) {
				e.uint(v.length, 4);
			} else {
				if (v.length < lo || v.length > hi) {
					throw new RangeError(`${field} must hold ${lo} to ${hi} entries, not ${v.length}`);
				}
				e.uint(v.length, 1);
			}
			for (const x of v) {
				elem.encode(e, x, field);
			}
		},
		decode(d, field) {
			let n;
			if (wide) {
				n = d.take(4, field).readUInt32BE(0);
				if (n > d.buf.length - d.pos) {
					throw d.fail(`count ${n}, but ${d.buf.length - d.pos} bytes follow`);
				}
			} else {
				n = d.take(1, field)[0];
				if (n < lo || n > hi) {
					throw d.fail(`${n} ${field}, want ${lo} to ${hi}`);
				}
			}
			const out = [];
			for (let i = 0; i < n; i++) {
				out.push(elem.decode(d, field));
			}
			return out;
		},
	};
}

function struct(fields) {
	return {
		encode(e, v) {
			for (const [name, f] of fields) {
				f.encode(e, v[name], name);
			}
		},
		decode(d) {
			const out = {};
			for (const [name, f] of fields) {
				out[name] = f.decode(d, name);
			}
			return out;
		},
	};
}

const u8 = uint(1);
const u16 = uint(2);
const u32 = uint(4);
const str8 = str(1, MAX_STR8_LEN);
const str16 = str(2, 0xffff);
const fieldList = list(struct([['name', str8], ['value', str16]]));
const putFlags = mask(0x03);

/**
 * Every message type of protocol version 1: its type byte and its fields in
 * wire order (docs/protocol.md, "Messages").
 */
export const MESSAGES = {
	hello: [0x01, [['versions', list(u16, { lo: 1, hi: 16 })]]],
	get: [0x02, [['name', str8], ['version', u32]]],
	list: [0x03, []],
	status: [0x04, []],
	reload: [0x05, [['name', str8]]],
	watch: [0x06, [['names', list(str8, { lo: 1, hi: MAX_WATCH })]]],
	health: [0x07, []],
	put: [0x08, [['name', str8], ['flags', putFlags], ['expires', i64], ['grace', u32], ['value', bytes(MAX_SECRET_SIZE)]]],
	remove: [0x09, [['name', str8], ['version', u32]]],
	prune: [0x0a, []],
	sign: [0x0b, [['name', str8], ['version', u32], ['method', str8], ['host', str8], ['path', str16],
		['query', bytes(MAX_SIGN_PART)], ['body', bytes(MAX_SIGN_PART)], ['recv_window_ms', u32]]],
	hmac: [0x0c, [['name', str8], ['version', u32], ['hash', range(1, 2)], ['encoding', range(1, 2)],
		['message', bytes(MAX_SIGN_PART)]]],
	put_credential: [0x0d, [['name', str8], ['flags', putFlags], ['expires', i64], ['grace', u32],
		['exchange', str8], ['api_key', str16], ['value', bytes(MAX_SECRET_SIZE)]]],
	describe: [0x0e, [['name', str8]]],
	hello_ok: [0x81, [['version', u16], ['agent', str8]]],
	secret: [0x82, [['name', str8], ['version', u32], ['expires', i64], ['value', bytes(MAX_SECRET_SIZE)]]],
	names: [0x83, [['names', list(str8, { wide: true })]]],
	status_ok: [0x84, [['healthy', bool], ['backend', str8], ['secrets', u32], ['uptime_ms', u64], ['agent', str8]]],
	reloaded: [0x85, [['version', u32]]],
	watching: [0x86, [['versions', list(u32, { lo: 1, hi: MAX_WATCH })]]],
	changed: [0x87, [['name', str8], ['version', u32]]],
	health_ok: [0x88, [['backend_ok', bool], ['backend_since', i64], ['last_ok', i64], ['secrets', u32],
		['problems', list(struct([['name', str8], ['state', u8], ['serving', u32], ['newest', u32]]), { wide: true })]]],
	stored: [0x89, [['version', u32], ['prev_until', i64]]],
	removed: [0x8a, [['count', u32]]],
	pruned: [0x8b, [['versions', list(struct([['name', str8], ['version', u32], ['retired', i64]]), { wide: true })]]],
	signed: [0x8c, [['version', u32], ['exchange', str8], ['api_key', str16], ['headers', fieldList],
		['query', bytes(2 * MAX_SIGN_PART)], ['body', bytes(2 * MAX_SIGN_PART)], ['params', fieldList], ['expires_ms', i64]]],
	mac: [0x8d, [['version', u32], ['mac', str16]]],
	described: [0x8e, [['version', u32], ['exchange', str8], ['api_key', str16], ['key_type', str8]]],
	error: [0xff, [['code', u16], ['message', str16]]],
};

const byType = new Map(Object.entries(MESSAGES).map(([name, [t]]) => [t, name]));

/**
 * The frame carrying a message with the given id. Throws RangeError when a
 * field breaks a limit of its type (check input from outside first).
 */
export function encode(type, id, fields) {
	const spec = MESSAGES[type];
	if (!spec) {
		throw new TypeError(`unknown message type ${type}`);
	}
	const e = new Encoder();
	for (const [name, f] of spec[1]) {
		f.encode(e, fields[name], name);
	}
	if (e.size + 5 > MAX_FRAME_SIZE) {
		throw new RangeError(`${type} frame of ${e.size + 5} bytes, limit ${MAX_FRAME_SIZE}`);
	}
	const head = Buffer.alloc(HEADER_SIZE);
	head.writeUInt32BE(e.size + 5, 0);
	head[4] = spec[0];
	head.writeUInt32BE(id, 5);
	return Buffer.concat([head, ...e.parts], HEADER_SIZE + e.size);
}

/** Refuses a frame's length field below 5 or above limit. */
export function checkLength(n, limit = MAX_FRAME_SIZE) {
	if (n < HEADER_SIZE - 4) {
		throw new ProtocolError(`frame length ${n}, minimum 5`);
	}
	if (n > limit) {
		throw new ProtocolError(`frame length ${n}, limit ${limit}`);
	}
}

/** Refuses a secret name the protocol cannot carry (BadRequest); the agent checks the naming rule itself. */
export function checkName(name) {
	const n = Buffer.byteLength(name ?? '', 'utf8');
	if (n < 1 || n > MAX_STR8_LEN) {
		throw new BadRequest(`a secret name of ${n} bytes`);
	}
}

/** Decodes the body of a frame of type t, strictly: [type name, fields]. */
export function decodeBody(t, body) {
	const name = byType.get(t);
	if (name === undefined) {
		throw new ProtocolError(`unknown message type 0x${t.toString(16).padStart(2, '0')}`);
	}
	const d = new Decoder(body, name);
	const fields = {};
	for (const [fname, f] of MESSAGES[name][1]) {
		fields[fname] = f.decode(d, fname);
	}
	if (d.pos !== body.length) {
		throw d.fail(`${body.length - d.pos} trailing bytes`);
	}
	return [name, fields];
}

/** Decodes one whole frame, length prefix included: [type name, id, fields]. */
export function decode(frame) {
	if (frame.length < 4) {
		throw new ProtocolError(`${frame.length} bytes, no length prefix`);
	}
	const n = frame.readUInt32BE(0);
	checkLength(n);
	if (n !== frame.length - 4) {
		throw new ProtocolError(`frame length ${n}, but ${frame.length - 4} bytes follow`);
	}
	const [name, fields] = decodeBody(frame[4], frame.subarray(HEADER_SIZE));
	return [name, frame.readUInt32BE(5), fields];
}
