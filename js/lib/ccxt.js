// attach: a ccxt exchange object whose private requests are signed by the
// keyward agent, so the API secret is never in this process.
//
// ccxt builds each request itself, as always, with a stand-in secret: every
// HMAC ccxt computes with it (and, for Coinbase, every JWT) becomes a
// marker instead of a signature. The request then reaches the exchange
// object's fetch (or, for a WebSocket message, its watch), which attach
// wraps: a request without a marker is public and goes out untouched; one
// with a marker is signed through the agent, and nothing is sent unless the
// agent signs it and no marker is left.
//
// - For the exchanges the agent has a signing scheme for (Binance, Bybit,
//   OKX, Kraken, Coinbase), the request minus ccxt's authentication (its
//   timestamp, nonce, receive window, signature and key headers) goes to the
//   agent's sign, which checks it against the policy's request scopes and
//   returns the authenticated request: byte for byte what ccxt would have
//   sent with the secret (docs/signing.md). The API key id comes from the
//   agent.
// - Any other ccxt exchange that signs with HMAC-SHA256 or HMAC-SHA512 of
//   the secret as it is, written in hex or base64, goes through the agent's
//   hmac: each marker is replaced by the MAC of what ccxt would have signed.
//   The agent cannot judge these requests (hmac grants anything the key can
//   do): prefer a scheme where there is one.

import { createHash, randomBytes } from 'node:crypto';
import { Client } from './client.js';
import { BadRequest, KeywardError } from './errors.js';

/** What ccxt holds instead of the secret: base64 of "keyward", valid where a secret must be base64. */
export const PLACEHOLDER = 'a2V5d2FyZA==';

const PLACEHOLDER_BYTES = Buffer.from(PLACEHOLDER, 'utf8');
const PLACEHOLDER_DECODED = Buffer.from(PLACEHOLDER, 'base64');

// The ccxt exchange ids of each exchange the agent signs for.
const FAMILIES = {
	binance: 'binance', binanceusdm: 'binance', binancecoinm: 'binance',
	bybit: 'bybit',
	okx: 'okx', myokx: 'okx',
	kraken: 'kraken',
	coinbase: 'coinbase', coinbaseadvanced: 'coinbase',
};

// Binance's and Kraken's authentication parameters, which ccxt puts in the
// query or body and the agent puts back.
const AUTH_PARAMS = { binance: ['timestamp', 'recvWindow', 'signature'], kraken: ['nonce'] };

// attached marks an exchange object attach has wrapped.
const attached = Symbol('keyward.attached');

/** An error of attach: the request could not be signed as ccxt built it, and was not sent. */
export class AttachError extends KeywardError {}

const sha256abc = createHash('sha256').update('abc').digest('hex');
const sha512abc = createHash('sha512').update('abc').digest('hex');

// hashName names the hash function ccxt passed to hmac, by its answer for
// "abc".
function hashName(fn) {
	let d;
	try {
		d = Buffer.from(fn(Buffer.from('abc'))).toString('hex');
	} catch {
		return null;
	}
	return d === sha256abc ? 'sha256' : d === sha512abc ? 'sha512' : null;
}

const bytesOf = (x) => (typeof x === 'string' ? Buffer.from(x, 'utf8') : Buffer.from(x));

// Marks hands out markers and remembers what each stands for.
class Marks {
	constructor() {
		this.prefix = `kwMAC${randomBytes(4).toString('hex')}_`;
		this.n = 0;
		this.byId = new Map();
		// Any spelling of a marker, in any case: a transformed one is found
		// too, and refused.
		this.any = new RegExp(`${this.prefix}\\d+`, 'i');
	}

	// add returns a new marker: a prefix, a number, and '+/=', which shows
	// whether ccxt percent-encoded it where it put it.
	add(what) {
		const id = ++this.n;
		if (this.byId.size > 1000) {
			this.byId.clear(); // markers never sent (ccxt failed after signing) would pile up
		}
		this.byId.set(id, what);
		return `${this.prefix}${id}+/=`;
	}

	found(...values) {
		return values.some((v) => this.in(v));
	}

	in(v) {
		if (typeof v === 'string') {
			return this.any.test(v);
		}
		if (v instanceof Uint8Array) {
			return this.any.test(Buffer.from(v).toString('latin1'));
		}
		if (v && typeof v === 'object') {
			return Object.values(v).some((x) => this.in(x));
		}
		return false;
	}

	// ids returns the markers in s, raw or percent-encoded; a marker spelt
	// any other way throws.
	ids(s) {
		const out = [];
		const re = new RegExp(`${this.prefix}(\\d+)(\\+/=|%2B%2F%3D)?`, 'gi');
		for (const m of s.matchAll(re)) {
			if (!m[0].startsWith(this.prefix) || m[2] === undefined || (m[2] !== '+/=' && m[2] !== '%2B%2F%3D')) {
				throw new AttachError('ccxt transformed a signature (changed its case or encoding, or cut it): this exchange cannot be signed through keyward');
			}
			out.push({ id: Number(m[1]), text: m[0], encoded: m[2] !== '+/=' });
		}
		return out;
	}
}

function isPlaceholder(key) {
	if (key === undefined || key === null) {
		return false;
	}
	const b = bytesOf(key);
	return b.equals(PLACEHOLDER_BYTES) || b.equals(PLACEHOLDER_DECODED);
}

// splitURL splits an https or wss URL by hand, so that nothing is
// normalised: base (up to the query), host (no port), path, query.
function splitURL(url) {
	const m = /^(?:https|wss):\/\/([a-z0-9.-]+)(?::\d+)?(\/[^?#]*)?(?:\?([^#]*))?$/i.exec(url);
	if (!m) {
		throw new AttachError(`cannot sign a request to ${url}: not an https or wss URL with a plain host`);
	}
	const q = url.indexOf('?');
	return { base: q < 0 ? url : url.slice(0, q), host: m[1].toLowerCase(), path: m[2] ?? '/', query: m[3] };
}

function header(headers, name) {
	const k = Object.keys(headers ?? {}).find((h) => h.toLowerCase() === name.toLowerCase());
	return k === undefined ? undefined : headers[k];
}

// withHeaders sets the agent's headers, in order, in place of any of the
// same name, followed by ccxt's others.
function withHeaders(signed, headers) {
	const out = {};
	const names = new Set(signed.map(([k]) => k.toLowerCase()));
	for (const [k, v] of signed) {
		out[k] = v;
	}
	for (const [k, v] of Object.entries(headers ?? {})) {
		if (!names.has(k.toLowerCase())) {
			out[k] = v;
		}
	}
	return out;
}

// stripForm removes the named parameters from a form or query string and
// returns it with the value of recvWindow, if it had one.
function stripForm(s, names) {
	let recv = 0;
	const kept = [];
	for (const p of s === '' ? [] : s.split('&')) {
		const k = p.split('=', 1)[0];
		if (k === 'recvWindow') {
			recv = Number(p.slice(k.length + 1));
		}
		if (!names.includes(k)) {
			kept.push(p);
		}
	}
	return [kept.join('&'), recv];
}

// stripKrakenNonce removes the nonce ccxt puts first in a Kraken body, form
// or JSON.
function stripKrakenNonce(body) {
	const json = /^\{"nonce":"\d+"(,?)/.exec(body);
	if (json) {
		return '{' + body.slice(json[0].length);
	}
	const form = /^nonce=\d+(&|$)/.exec(body);
	if (form) {
		return body.slice(form[0].length);
	}
	throw new AttachError('ccxt built a Kraken request without its nonce first: cannot sign it through keyward');
}

/** The agent's signature of a REST request ccxt built: the request to send. */
async function signREST(client, name, family, url, method, headers, body) {
	const u = splitURL(url);
	let query = u.query ?? '';
	let form = body ?? '';
	let recv = 0;
	if (family === 'binance') {
		if (method === 'GET' || method === 'DELETE') {
			[query, recv] = stripForm(query, AUTH_PARAMS.binance);
		} else {
			[form, recv] = stripForm(form, AUTH_PARAMS.binance);
		}
	} else if (family === 'kraken') {
		form = stripKrakenNonce(form);
	} else if (family === 'bybit') {
		recv = Number(header(headers, 'X-BAPI-RECV-WINDOW') ?? 0);
	}
	const s = await client.sign(name, { method, host: u.host, path: u.path, query, body: form, recvWindowMs: recv });
	return {
		// ccxt's URL as it was, the query replaced ('?' kept where ccxt wrote one).
		url: u.base + (s.query !== '' || u.query !== undefined ? '?' + s.query : ''),
		headers: withHeaders(s.headers, headers),
		body: s.body === '' && body === undefined ? undefined : s.body,
	};
}

/** The agent's signature of a WebSocket message ccxt built: the message to send. */
async function signWS(client, name, family, url, message) {
	const host = splitURL(url).host;
	const out = { ...message };
	const login = async () => new Map((await client.sign(name, { method: 'WS', host, path: 'login' })).params);
	switch (family) {
	case 'okx': { // {op: 'login', args: [{apiKey, passphrase, timestamp, sign}]}
		out.args = [Object.fromEntries(await login())];
		return out;
	}
	case 'bybit': { // {op: 'auth', args: [apiKey, expires, signature]}
		const p = await login();
		out.args = ['apiKey', 'expires', 'signature'].map((k) => p.get(k));
		return out;
	}
	case 'coinbase': { // {type: 'subscribe', ..., jwt}
		// ccxt's WebSocket client takes an Ed25519 key (whose id has no
		// "organizations/") for a legacy HMAC key and signs the message
		// with api_key, timestamp and signature; a JWT is what Coinbase
		// takes from either kind, as ccxt's REST client knows.
		for (const legacy of ['api_key', 'timestamp', 'signature']) {
			delete out[legacy];
		}
		out.jwt = (await login()).get('jwt');
		return out;
	}
	case 'binance': { // {id, method, params: {...sorted, signature}}
		const given = message.params ?? {};
		const own = Object.entries(given).filter(([k]) => !['apiKey', 'timestamp', 'recvWindow', 'signature'].includes(k));
		const query = own.map(([k, v]) => `${k}=${encodeURIComponent(String(v))}`).join('&');
		const s = await client.sign(name, { method: 'WS', host, path: message.method, query, recvWindowMs: Number(given.recvWindow ?? 0) });
		out.params = {};
		for (const [k, v] of s.params) {
			if (k === 'timestamp' || k === 'recvWindow') {
				out.params[k] = Number(v);
			} else {
				// A value ccxt gave as a number stays a number in the message.
				out.params[k] = k in given && typeof given[k] !== 'string' && String(given[k]) === v ? given[k] : v;
			}
		}
		return out;
	}
	}
	throw new AttachError(`no WebSocket login for ${family}`);
}

/**
 * Resolves the markers in strings through the agent's hmac and returns the
 * strings with each replaced by its MAC, percent-encoded where ccxt had
 * encoded it.
 */
async function macs(client, name, marks, strings) {
	const mac = new Map();
	for (const s of strings) {
		for (const { id } of marks.ids(s)) {
			if (mac.has(id)) {
				continue;
			}
			const what = marks.byId.get(id);
			if (!what || what.hash === undefined) {
				throw new AttachError('a signature of an earlier request, or of another kind, is in this one: not sent');
			}
			if (marks.in(what.payload)) {
				throw new AttachError('ccxt signs a signature here (a chain of HMACs): this exchange cannot be signed through keyward');
			}
			mac.set(id, await client.hmac(name, what.payload, { hash: what.hash, encoding: what.digest }));
		}
	}
	return strings.map((s) => {
		let out = s;
		for (const { id, text, encoded } of marks.ids(s)) {
			out = out.replace(text, encoded ? encodeURIComponent(mac.get(id)) : mac.get(id));
		}
		return out;
	});
}

// mapStrings applies f to every string in a JSON-like value.
async function mapStrings(v, f) {
	if (typeof v === 'string') {
		return f(v);
	}
	if (Array.isArray(v)) {
		return Promise.all(v.map((x) => mapStrings(x, f)));
	}
	if (v && typeof v === 'object') {
		const out = {};
		for (const [k, x] of Object.entries(v)) {
			out[k] = await mapStrings(x, f);
		}
		return out;
	}
	return v;
}

/**
 * Attaches a ccxt exchange object (REST or ccxt.pro) to the keyward agent:
 * from now on every private request it builds is signed through the agent
 * with the credential name, and the exchange object never holds the secret.
 *
 * For Binance, Bybit, OKX, Kraken and Coinbase, name is an exchange
 * credential (keyward put --exchange) and the caller needs the sign
 * permission on it; the API key id comes from the agent. For another
 * exchange, name is a plain secret (the API secret) with the hmac
 * permission, and opts.apiKey (and opts.password, where the exchange has
 * one) give what is not secret.
 *
 * A request the policy does not allow rejects with Denied before anything
 * is sent; one ccxt builds in a way attach cannot sign rejects with
 * AttachError.
 *
 * @param exchange a ccxt exchange object
 * @param name the secret's name, e.g. "binance/mm-prod"
 * @param opts { client: a keyward Client (default: Client.connect()), apiKey, password }
 */
export async function attach(exchange, name, opts = {}) {
	if (exchange[attached]) {
		throw new TypeError(`${exchange.id} is attached already`);
	}
	if (exchange.secret && exchange.secret !== PLACEHOLDER) {
		throw new TypeError(`${exchange.id} was given its secret: make it without one, and the agent signs for it`);
	}
	const client = opts.client ?? await Client.connect();
	const family = FAMILIES[exchange.id];
	if (family) {
		const cred = await client.describe(name);
		if (cred.exchange !== family) {
			throw new BadRequest(`${name} is a ${cred.exchange} credential; ${exchange.id} needs a ${family} one`);
		}
		exchange.apiKey = cred.apiKey;
		if (family === 'okx') {
			exchange.password = PLACEHOLDER; // the agent adds the passphrase
		}
	} else {
		if (!opts.apiKey) {
			throw new TypeError(`keyward has no signing scheme for ${exchange.id}: attach it with { apiKey } and the hmac permission on ${name}`);
		}
		exchange.apiKey = opts.apiKey;
		if (opts.password !== undefined) {
			exchange.password = opts.password;
		}
	}
	exchange.secret = PLACEHOLDER;
	exchange[attached] = true;

	const marks = new Marks();
	const hmac = exchange.hmac;
	exchange.hmac = function (request, key, hash, digest = 'hex') {
		if (!isPlaceholder(key)) {
			return hmac.call(this, request, key, hash, digest); // not with the secret (a broker's own key)
		}
		if (!family) {
			if (bytesOf(key).equals(PLACEHOLDER_DECODED)) {
				throw new AttachError(`${exchange.id} derives its HMAC key from the secret; keyward's hmac uses the secret as stored`);
			}
			const h = hashName(hash);
			if (h === null || (digest !== 'hex' && digest !== 'base64')) {
				throw new AttachError(`${exchange.id} signs with an HMAC keyward does not make (SHA-256 or SHA-512, hex or base64)`);
			}
			return marks.add({ payload: bytesOf(request), hash: h, digest });
		}
		return marks.add({});
	};
	if (family === 'coinbase') {
		exchange.createAuthToken = () => marks.add({});
	}

	const fetch = exchange.fetch;
	exchange.fetch = async function (url, method, headers, body) {
		if (!marks.found(url, headers, body)) {
			return fetch.call(this, url, method, headers, body); // public
		}
		let r;
		if (family) {
			r = await signREST(client, name, family, url, method, headers, body);
		} else {
			const keys = Object.keys(headers ?? {});
			const [u, b, ...values] = await macs(client, name, marks, [url, body ?? '', ...keys.map((k) => String(headers[k]))]);
			r = { url: u, body: body === undefined ? undefined : b, headers: Object.fromEntries(keys.map((k, i) => [k, values[i]])) };
		}
		if (marks.found(r.url, r.headers, r.body) || JSON.stringify(r).includes(PLACEHOLDER)) {
			throw new AttachError(`${method} ${url}: part of ccxt's authentication is left in the signed request: not sent`);
		}
		return fetch.call(this, r.url, method, r.headers, r.body);
	};

	const watch = exchange.watch;
	if (typeof watch === 'function') {
		exchange.watch = function (url, messageHash, message, subscribeHash, subscription) {
			if (!marks.found(message)) {
				return watch.call(this, url, messageHash, message, subscribeHash, subscription);
			}
			return (async () => {
				let signed;
				try {
					signed = family
						? await signWS(client, name, family, url, message)
						: await mapStrings(message, async (s) => (await macs(client, name, marks, [s]))[0]);
					if (marks.found(signed) || JSON.stringify(signed).includes(PLACEHOLDER)) {
						throw new AttachError(`a WebSocket message to ${url} still holds part of ccxt's authentication: not sent`);
					}
				} catch (e) {
					this.client(url).reject(e, messageHash); // whoever waits for the login learns why
					throw e;
				}
				return watch.call(this, url, messageHash, signed, subscribeHash, subscription);
			})();
		};
	}
	return exchange;
}
