// Watching secrets for rotations.

import * as wire from './wire.js';
import { Stale } from './conn.js';
import { AgentError, BadRequest, ProtocolError, RateLimited, Unavailable, fromAnswer } from './errors.js';

// Backoff between resubscriptions after the agent went away, in ms.
const FIRST_BACKOFF = 50;
const MAX_BACKOFF = 5000;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Changes of watched secrets, from Client.watch: an async iterator of
 * { name, version } (version 0: no longer served), each change once and in
 * order, until close().
 *
 * A Watch has a connection of its own, which keeps the process alive while
 * it is open. When the agent restarts, it subscribes again with a backoff
 * (50 ms doubling to 5 s) and then reports each name whose version differs
 * from the last one it reported, so a trading process can re-authenticate
 * without restarting. If the agent refuses the new subscription for good
 * (the watch permission was revoked: Denied; or any error other than
 * Unavailable and RateLimited), iterating throws that error instead of
 * retrying for ever.
 */
export class Watch {
	#client;
	#names;
	#last = new Map();
	#queue = [];
	#waiters = [];
	#conn = null;
	#closed = false;
	#ended = false;
	#error = null;

	constructor(client, names) {
		if (names.length < 1 || names.length > wire.MAX_WATCH) {
			throw new BadRequest(`watch 1 to ${wire.MAX_WATCH} names, not ${names.length}`);
		}
		for (const n of names) {
			wire.checkName(n);
		}
		this.#client = client;
		this.#names = [...names];
	}

	/** Subscribes for the first time; its error is thrown. */
	async start() {
		this.#conn = await this.#subscribe(false);
	}

	[Symbol.asyncIterator]() {
		return this;
	}

	/** The iterator protocol: the next change, or done once closed. */
	async next() {
		const c = await this.get();
		return c === null ? { value: undefined, done: true } : { value: c, done: false };
	}

	/** Ends iteration early (break out of for await): closes the watch. */
	async return() {
		this.close();
		return { value: undefined, done: true };
	}

	/**
	 * The next change, waiting at most timeoutMs (undefined: for ever); null
	 * on timeout or once the watch is closed. Throws the error that ended
	 * the watch, if one did.
	 */
	get(timeoutMs) {
		if (this.#queue.length > 0) {
			return Promise.resolve(this.#queue.shift());
		}
		if (this.#ended) {
			return this.#error ? Promise.reject(this.#error) : Promise.resolve(null);
		}
		return new Promise((resolve, reject) => {
			const w = { resolve, reject, timer: undefined };
			if (timeoutMs !== undefined) {
				w.timer = setTimeout(() => {
					this.#waiters.splice(this.#waiters.indexOf(w), 1);
					resolve(null);
				}, timeoutMs);
			}
			this.#waiters.push(w);
		});
	}

	/** Stops watching and closes the connection; iteration then ends. */
	close() {
		this.#closed = true;
		const c = this.#conn;
		this.#conn = null;
		c?.close();
		this.#end(null);
	}

	#push(change) {
		const w = this.#waiters.shift();
		if (w) {
			clearTimeout(w.timer);
			w.resolve(change);
		} else {
			this.#queue.push(change);
		}
	}

	#end(err) {
		if (this.#ended) {
			return;
		}
		this.#ended = true;
		this.#error = err;
		for (const w of this.#waiters.splice(0)) {
			clearTimeout(w.timer);
			if (err) {
				w.reject(err);
			} else {
				w.resolve(null);
			}
		}
	}

	// subscribe connects and sends the Watch request; with report, the
	// versions that differ from the last ones reported are queued.
	async #subscribe(report) {
		const deadline = this.#client.deadline();
		const c = await this.#client.connectOne(deadline);
		try {
			const [t, a] = await c.roundTrip('watch', { names: this.#names }, deadline);
			if (t === 'error') {
				throw fromAnswer(a.code, a.message);
			}
			if (t !== 'watching' || a.versions.length !== this.#names.length) {
				throw new ProtocolError(`unexpected answer ${t} to watch`);
			}
			this.#names.forEach((name, i) => {
				const v = a.versions[i];
				if (report && v !== (this.#last.get(name) ?? 0)) {
					this.#push({ name, version: v });
				}
				this.#last.set(name, v);
			});
		} catch (e) {
			c.close();
			throw e instanceof Stale ? new Unavailable('the agent closed the connection') : e;
		}
		c.socket.ref(); // notifications come whenever they come
		c.unasked = (f) => this.#notified(c, f);
		return c;
	}

	#notified(c, f) {
		if (f === null) { // the connection is gone
			if (!this.#closed && this.#conn === c) {
				this.#conn = null;
				this.#resubscribe();
			}
			return;
		}
		if (f.version !== (this.#last.get(f.name) ?? 0)) {
			this.#last.set(f.name, f.version);
			this.#push({ name: f.name, version: f.version });
		}
	}

	async #resubscribe() {
		let backoff = FIRST_BACKOFF;
		while (!this.#closed) {
			try {
				const c = await this.#subscribe(true);
				if (this.#closed) {
					c.close();
				} else {
					this.#conn = c;
				}
				return;
			} catch (e) {
				if (!(e instanceof Unavailable || e instanceof RateLimited || e instanceof ProtocolError)) {
					this.#end(e instanceof AgentError ? e : new ProtocolError(String(e)));
					return;
				}
			}
			await sleep(backoff);
			backoff = Math.min(2 * backoff, MAX_BACKOFF);
		}
	}
}
