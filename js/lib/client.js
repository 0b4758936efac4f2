// The client: what a trading process uses to talk to the keyward agent.

import * as wire from './wire.js';
import { Stale, dial } from './conn.js';
import { BadRequest, ClientClosed, ProtocolError, Unavailable, fromAnswer } from './errors.js';
import { Watch } from './watch.js';

/** The agent's socket when neither an argument nor $KEYWARD_SOCKET names one. */
export const DEFAULT_SOCKET = '/run/keyward/agent.sock';

/** The environment variable that names the agent's socket. */
export const SOCKET_ENV = 'KEYWARD_SOCKET';

const inspect = Symbol.for('nodejs.util.inspect.custom');

/**
 * A secret value: `value` is a Buffer of its own; `name`, `version` and
 * `expires` (a Date after which the value must not be used, or null)
 * describe it. Call wipe() when done. It never shows the value when
 * printed, logged or serialised to JSON; copies made from `value` (a
 * string, another Buffer) are beyond wipe's reach.
 */
export class Secret {
	#value;

	constructor(name, version, expires, value) {
		this.name = name;
		this.version = version;
		this.expires = expires;
		this.#value = value;
	}

	/** The value. It is the Secret's own memory: do not keep it past wipe(). */
	get value() {
		return this.#value;
	}

	/** Zeroes the value and drops it. */
	wipe() {
		this.#value.fill(0);
		this.#value = Buffer.alloc(0);
	}

	toString() {
		return `[keyward.Secret ${this.name} version ${this.version} (${this.#value.length} bytes)]`;
	}

	toJSON() {
		return this.toString();
	}

	[inspect]() {
		return this.toString();
	}
}

function unexpected(answer, request) {
	return new ProtocolError(`unexpected answer ${answer} to ${request}`);
}

function date(seconds) {
	return seconds === 0n ? null : new Date(Number(seconds) * 1000);
}

const STATES = { 1: 'stale', 2: 'unavailable', 3: 'damaged' };
const HASHES = { sha256: 1, sha512: 2 };
const ENCODINGS = { hex: 1, base64: 2 };

function part(v, what) {
	const b = typeof v === 'string' ? Buffer.from(v, 'utf8') : Buffer.from(v ?? []);
	if (b.length > wire.MAX_SIGN_PART) {
		throw new BadRequest(`a ${what} of ${b.length} bytes, limit ${wire.MAX_SIGN_PART}`);
	}
	return b;
}

/**
 * A client of the keyward agent on its Unix socket. Make one with
 * Client.connect(), which connects once so that a missing agent shows at
 * once (Unavailable).
 *
 * A Client may serve any number of concurrent requests: it keeps a pool of
 * up to maxConnections connections (16 by default), each request takes one,
 * and requests beyond that wait for one to come back. A request that fails because the
 * agent had closed a pooled connection (it restarted, or closed an idle
 * connection) is sent once more on a fresh one: every request this client
 * sends only reads, so that is safe. Idle connections do not keep the
 * process alive.
 *
 * The agent knows the caller from the kernel when it connects: connect from
 * the process that will use the secrets, after it dropped privileges.
 */
export class Client {
	#idle = [];
	#open = 0; // connections open, idle or in use
	#waiting = []; // requests waiting for a connection
	#closed = false;

	/**
	 * @param {string} [path] the socket; default $KEYWARD_SOCKET, then DEFAULT_SOCKET
	 * @param {{timeout?: number, maxConnections?: number}} [opts] timeout: milliseconds each call may
	 *   take, waiting for a connection included (default 10000; 0: no limit); maxConnections: the
	 *   most connections open at once (default 16)
	 */
	static async connect(path, opts = {}) {
		const c = new Client(path, opts);
		c.#open++;
		c.#put(await c.connectOne(c.deadline()));
		return c;
	}

	/** Use Client.connect. */
	constructor(path, { timeout = 10000, maxConnections = 16 } = {}) {
		this.path = path || process.env[SOCKET_ENV] || DEFAULT_SOCKET;
		this.timeout = timeout;
		this.maxConnections = maxConnections;
	}

	/** Closes the idle connections; later requests throw ClientClosed. */
	close() {
		this.#closed = true;
		for (const c of this.#idle.splice(0)) {
			c.close();
			this.#open--;
		}
		for (const w of this.#waiting.splice(0)) {
			clearTimeout(w.timer);
			w.resolve(null);
		}
	}

	/** The current version of a secret. */
	get(name) {
		return this.getVersion(name, 0);
	}

	/** A given version of a secret; 0 means the current one. */
	async getVersion(name, version) {
		wire.checkName(name);
		const [t, a] = await this.call('get', { name, version });
		if (t !== 'secret') {
			throw unexpected(t, 'get');
		}
		if (a.name !== name || (version !== 0 && a.version !== version)) {
			a.value.fill(0);
			throw new ProtocolError(`an answer for ${a.name} version ${a.version} to a get of ${name}`);
		}
		return new Secret(name, a.version, date(a.expires), a.value);
	}

	/** The names of the secrets the caller may get. */
	async list() {
		const [t, a] = await this.call('list', {});
		if (t !== 'names') {
			throw unexpected(t, 'list');
		}
		return a.names;
	}

	/** The agent's health: { healthy, backend, secrets, uptimeMs, agent }. */
	async status() {
		const [t, a] = await this.call('status', {});
		if (t !== 'status_ok') {
			throw unexpected(t, 'status');
		}
		return { healthy: a.healthy, backend: a.backend, secrets: a.secrets, uptimeMs: Number(a.uptime_ms), agent: a.agent };
	}

	/** The agent's health in detail; problems of secrets the caller may list or administer. */
	async health() {
		const [t, a] = await this.call('health', {});
		if (t !== 'health_ok') {
			throw unexpected(t, 'health');
		}
		return {
			backendOk: a.backend_ok,
			backendSince: date(a.backend_since),
			lastOk: date(a.last_ok),
			secrets: a.secrets,
			problems: a.problems.map((p) => ({ name: p.name, state: STATES[p.state] ?? 'unknown', serving: p.serving, newest: p.newest })),
		};
	}

	/**
	 * Subscribes to changes of the current version of names (the caller
	 * needs the watch permission on each) and resolves to a Watch, an async
	 * iterator of { name, version }. The first subscription's error is
	 * thrown here.
	 */
	async watch(...names) {
		const w = new Watch(this, names);
		await w.start();
		return w;
	}

	/** What is not secret of an exchange credential: { version, exchange, apiKey, keyType }. */
	async describe(name) {
		wire.checkName(name);
		const [t, a] = await this.call('describe', { name });
		if (t !== 'described') {
			throw unexpected(t, 'describe');
		}
		return { version: a.version, exchange: a.exchange, apiKey: a.api_key, keyType: a.key_type };
	}

	/**
	 * Has the agent sign an exchange request with the credential name
	 * (docs/signing.md). query is the raw query string without '?' and body
	 * the raw body, exactly as they will be sent, without the exchange's
	 * authentication parameters; for a WebSocket login, method is 'WS' and
	 * path what is signed. Resolves to what to send: { headers: [[name,
	 * value]...] to set in order, replacing any of the same name; query and
	 * body (strings) to send instead; params for a WebSocket login;
	 * expiresMs; version, exchange, apiKey }. A request outside the
	 * caller's scopes throws Denied.
	 */
	async sign(name, { method, host, path, query = '', body = '', recvWindowMs = 0, version = 0 }) {
		wire.checkName(name);
		const [t, a] = await this.call('sign', {
			name, version, method, host, path,
			query: part(query, 'query'), body: part(body, 'body'), recv_window_ms: recvWindowMs,
		});
		if (t !== 'signed') {
			throw unexpected(t, 'sign');
		}
		return {
			version: a.version,
			exchange: a.exchange,
			apiKey: a.api_key,
			headers: a.headers.map((h) => [h.name, h.value]),
			query: a.query.toString('utf8'),
			body: a.body.toString('utf8'),
			params: a.params.map((p) => [p.name, p.value]),
			expiresMs: Number(a.expires_ms),
		};
	}

	/**
	 * The HMAC of message under the secret name, for an exchange without a
	 * signing scheme (needs the hmac permission). hash is 'sha256' or
	 * 'sha512', encoding 'hex' (lower case) or 'base64'.
	 */
	async hmac(name, message, { hash = 'sha256', encoding = 'hex', version = 0 } = {}) {
		wire.checkName(name);
		if (!HASHES[hash] || !ENCODINGS[encoding]) {
			throw new TypeError(`hash must be sha256 or sha512 and encoding hex or base64, not ${hash} and ${encoding}`);
		}
		const [t, a] = await this.call('hmac', {
			name, version, hash: HASHES[hash], encoding: ENCODINGS[encoding], message: part(message, 'message'),
		});
		if (t !== 'mac') {
			throw unexpected(t, 'hmac');
		}
		return a.mac;
	}

	// The pool.

	deadline() {
		return this.timeout ? Date.now() + this.timeout : undefined;
	}

	/** Opens a connection and says hello. */
	async connectOne(deadline) {
		const c = await dial(this.path, deadline);
		try {
			await c.hello(deadline);
		} catch (e) {
			c.close();
			throw e instanceof Stale ? new Unavailable('the agent closed the connection') : e;
		}
		return c;
	}

	async #take(deadline) {
		for (;;) {
			if (this.#closed) {
				throw new ClientClosed('the client is closed');
			}
			const c = this.#idle.pop();
			if (c) {
				return [c, true];
			}
			if (this.#open < this.maxConnections) {
				this.#open++;
				try {
					return [await this.connectOne(deadline), false];
				} catch (e) {
					this.#release();
					throw e;
				}
			}
			// Wait for a connection to come back, or for a free slot.
			const handed = await new Promise((resolve, reject) => {
				const w = { resolve, timer: undefined };
				if (deadline !== undefined) {
					w.timer = setTimeout(() => {
						this.#waiting.splice(this.#waiting.indexOf(w), 1);
						reject(new Unavailable(`all ${this.maxConnections} connections to the agent stayed busy`));
					}, Math.max(0, deadline - Date.now()));
				}
				this.#waiting.push(w);
			});
			if (handed) {
				return [handed, true];
			}
		}
	}

	#wake(c) {
		const w = this.#waiting.shift();
		if (w) {
			clearTimeout(w.timer);
			w.resolve(c);
		}
		return w !== undefined;
	}

	// put takes back a connection after a request that went through.
	#put(c) {
		if (this.#closed || c.closed !== null) {
			c.close();
			this.#release();
		} else if (!this.#wake(c)) {
			this.#idle.push(c);
		}
	}

	// release gives up a connection's slot.
	#release() {
		this.#open--;
		this.#wake(null);
	}

	/**
	 * Sends a request on a pooled connection and resolves to the answer; an
	 * error answer is thrown. A request that failed on a pooled connection
	 * the agent had closed is sent once more.
	 */
	async call(type, fields) {
		const deadline = this.deadline();
		let retried = false;
		for (;;) {
			const [c, reused] = await this.#take(deadline);
			let answer;
			try {
				answer = await c.roundTrip(type, fields, deadline);
			} catch (e) {
				c.close();
				this.#release();
				if (e instanceof Stale) {
					if (reused && !retried) {
						retried = true;
						continue;
					}
					throw new Unavailable('the agent closed the connection');
				}
				throw e;
			}
			this.#put(c);
			const [t, a] = answer;
			if (t === 'error') {
				throw fromAnswer(a.code, a.message);
			}
			return answer;
		}
	}
}
