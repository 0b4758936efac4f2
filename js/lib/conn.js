// One connection to the agent: dial, hello, one request at a time.

import net from 'node:net';
import * as wire from './wire.js';
import { ProtocolError, Unavailable, fromAnswer } from './errors.js';

// The read buffer a connection starts with, as the Go client's.
const SMALL = 4096;

/**
 * The agent closed the connection before this request reached it (end of
 * stream, reset, broken pipe): the request may be sent again on a fresh
 * connection.
 */
export class Stale extends Error {}

function timedOut(what) {
	return new Unavailable(`the agent did not ${what} in time`);
}

function connectOnce(path, onread) {
	return new Promise((resolve, reject) => {
		const s = net.createConnection({ path, onread });
		s.once('connect', () => {
			s.removeListener('error', reject);
			resolve(s);
		});
		s.once('error', reject);
	});
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Connects to the agent's socket. A full listen backlog (EAGAIN: the agent
 * is busy accepting, or another user floods it) is retried with a backoff
 * from 50 µs to 20 ms until the deadline, as a blocking connect would wait.
 */
export async function dial(path, deadline) {
	let wait = 0.05;
	const conn = new Conn();
	for (;;) {
		try {
			conn.attach(await connectOnce(path, conn.onread));
			return conn;
		} catch (e) {
			if (e.code !== 'EAGAIN') {
				throw new Unavailable(`cannot connect to the agent at ${path}: ${e.message}`);
			}
			if (deadline !== undefined && Date.now() + wait > deadline) {
				throw new Unavailable(`the agent at ${path} is too busy to accept a connection`);
			}
		}
		await sleep(wait);
		wait = Math.min(2 * wait, 20);
	}
}

/**
 * A connection to the agent, used by one request at a time. The socket
 * reads into one buffer of the connection's own (net's onread), which is
 * zeroed after every read; frames are assembled in a second one, zeroed as
 * they are consumed, so a secret's bytes are not left in memory the
 * client does not control.
 */
export class Conn {
	constructor() {
		this.socket = null;
		this.id = 0;
		this.frame = Buffer.alloc(4 + SMALL); // frame assembly: frame[0:have]
		this.have = 0;
		this.pending = null; // { id, resolve, reject, started }
		this.unasked = null; // called with the fields of each Changed frame, if set
		this.closed = null; // the error that ended the connection
		this.onread = { buffer: Buffer.alloc(SMALL), callback: (n, buf) => this.received(n, buf) };
	}

	attach(socket) {
		this.socket = socket;
		socket.unref(); // an idle connection does not keep the process alive
		socket.on('error', (e) => this.fail(e.code === 'EPIPE' || e.code === 'ECONNRESET' ? new Stale(e.message) : new Unavailable(`connection to the agent: ${e.message}`)));
		socket.on('end', () => this.fail(new Stale('the agent closed the connection')));
		socket.on('close', () => this.fail(new Stale('the agent closed the connection')));
	}

	/** Closes the connection and zeroes its buffers. */
	close() {
		this.fail(new Stale('closed'));
	}

	fail(err) {
		if (this.closed === null) {
			this.closed = err;
			this.frame.fill(0);
			this.socket?.destroy();
		}
		const p = this.pending;
		if (p !== null) {
			this.pending = null;
			p.reject(err instanceof Stale && p.started ? new ProtocolError('the agent closed the connection in the middle of an answer') : err);
		}
		if (this.unasked !== null) {
			const u = this.unasked;
			this.unasked = null;
			u(null);
		}
	}

	received(n, buf) {
		try {
			this.take(buf.subarray(0, n));
		} catch (e) {
			this.fail(e);
		} finally {
			buf.fill(0, 0, n);
		}
		return true;
	}

	// take appends bytes from the socket and handles each whole frame.
	take(data) {
		let off = 0;
		while (off < data.length) {
			const need = this.have < 4 ? 4 : 4 + this.frame.readUInt32BE(0);
			const n = Math.min(need - this.have, data.length - off);
			data.copy(this.frame, this.have, off, off + n);
			this.have += n;
			off += n;
			if (this.pending !== null) {
				this.pending.started = true;
			}
			if (this.have === 4 && need === 4) {
				const len = this.frame.readUInt32BE(0);
				wire.checkLength(len);
				if (4 + len > this.frame.length) {
					const bigger = Buffer.alloc(4 + len);
					this.frame.copy(bigger, 0, 0, 4);
					this.frame.fill(0);
					this.frame = bigger;
				}
			} else if (this.have === need) {
				const frame = this.frame.subarray(0, need);
				try {
					this.dispatch(frame[4], frame.readUInt32BE(5), frame.subarray(wire.HEADER_SIZE));
				} finally {
					frame.fill(0);
					this.have = 0;
					if (this.frame.length > 4 + SMALL) {
						this.frame = Buffer.alloc(4 + SMALL);
					}
				}
			}
		}
	}

	dispatch(t, id, body) {
		if (id === 0) {
			// An unasked message: a watch notification, for a watching
			// connection; ignored elsewhere.
			if (this.unasked !== null) {
				const [name, fields] = wire.decodeBody(t, body);
				if (name !== 'changed') {
					throw new ProtocolError(`unexpected unasked ${name}`);
				}
				this.unasked(fields);
			}
			return;
		}
		const p = this.pending;
		if (p === null || id !== p.id) {
			throw new ProtocolError(`answer for request ${id}, want ${p?.id ?? 'none'}`);
		}
		const answer = wire.decodeBody(t, body); // a bad body fails the connection, and p with it
		this.pending = null;
		p.resolve(answer);
	}

	/**
	 * Sends a request and resolves to its answer, [type name, fields], an
	 * Error answer too. Rejects with Stale when the agent had closed the
	 * connection before answering.
	 */
	roundTrip(type, fields, deadline) {
		if (this.closed !== null) {
			return Promise.reject(this.closed instanceof Stale ? this.closed : new Stale('closed'));
		}
		this.id = (this.id % 0xffffffff) + 1; // id 0 is the agent's, for unasked messages
		const frame = wire.encode(type, this.id, fields);
		return new Promise((resolve, reject) => {
			let timer;
			const done = (f) => (v) => {
				clearTimeout(timer);
				this.socket.unref();
				f(v);
			};
			this.pending = { id: this.id, resolve: done(resolve), reject: done(reject), started: false };
			if (deadline !== undefined) {
				timer = setTimeout(() => this.fail(timedOut('answer')), Math.max(0, deadline - Date.now()));
			}
			this.socket.ref();
			this.socket.write(frame);
		});
	}

	/** Sends hello and checks the agent speaks version 1. */
	async hello(deadline) {
		const [t, f] = await this.roundTrip('hello', { versions: [wire.VERSION_1] }, deadline);
		if (t === 'error') {
			throw fromAnswer(f.code, f.message);
		}
		if (t !== 'hello_ok' || f.version !== wire.VERSION_1) {
			throw new ProtocolError(`unexpected answer ${t} to hello`);
		}
	}
}
