// ccxt-oracle.mjs signs requests with ccxt, offline, for exchange/ccxt_test.go.
//
// Usage: node ccxt-oracle.mjs /abs/path/to/js/node_modules/ccxt < cases.json
//
// Each case on stdin names a ccxt exchange class, credentials, a pinned
// clock and nonce, and one call. The script pins ccxt's clock
// (milliseconds, seconds, nonce) and random bytes, replaces fetch with a
// recorder that throws, makes the call, and prints for each case what ccxt
// would have sent: method, URL, headers (in order) and body; or, for
// WebSocket logins, the signed parameters; or an error. Nothing touches
// the network.
import { pathToFileURL } from 'node:url';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';

const dir = process.argv[2];
if (!dir) {
	console.error('usage: node ccxt-oracle.mjs CCXT_PACKAGE_DIR < cases.json');
	process.exit(2);
}
const ccxt = (await import(pathToFileURL(join(dir, 'js', 'ccxt.js')).href)).default;

class Recorded extends Error {
	constructor(what) {
		super('recorded');
		this.what = what;
	}
}

function pin(ex, c) {
	ex.enableRateLimit = false;
	ex.milliseconds = () => c.ms;
	ex.seconds = () => Math.floor(c.ms / 1000);
	ex.nonce = () => c.nonce;
	ex.randomBytes = () => c.random;
	ex.fetch = async (url, method, headers, body) => {
		throw new Recorded({
			method,
			url,
			headers: Object.entries(headers ?? {}),
			body: body ?? null,
		});
	};
	// WebSocket logins: record the message instead of sending it.
	ex.watch = (url, hash, message) => {
		throw new Recorded({ message });
	};
}

async function run(c) {
	const cls = c.ws ? ccxt.pro[c.exchange] : ccxt[c.exchange];
	const ex = new cls({ apiKey: c.apiKey, secret: c.secret, password: c.password });
	pin(ex, c);
	try {
		switch (c.call) {
		case 'ws:binance': // the params of a signed WebSocket API request
			return { params: Object.entries(ex.signParams(c.params)).map(([k, v]) => [k, String(v)]) };
		case 'ws:okx':
			await ex.authenticate();
			break;
		case 'ws:bybit':
			await ex.authenticate('wss://stream.bybit.com/v5/private');
			break;
		case 'ws:coinbase': {
			// ccxt's WebSocket client calls createAuthToken without its
			// useEddsa argument, so it cannot log in with an Ed25519 key;
			// pass it here as its REST client does (secret of 88 characters).
			const eddsa = c.secret.length === 88;
			return { params: [['jwt', ex.createAuthToken(ex.seconds(), undefined, undefined, eddsa)]] };
		}
		default:
			await ex[c.call](c.params);
		}
	} catch (e) {
		if (e instanceof Recorded) {
			return e.what;
		}
		return { error: String(e && e.stack || e) };
	}
	return { error: 'the call returned without sending a request' };
}

const cases = JSON.parse(readFileSync(0, 'utf8'));
const out = [];
for (const c of cases) {
	out.push(await run(c));
}
// Exit once written: WebSocket clients may hold timers open.
process.stdout.write(JSON.stringify(out), () => process.exit(0));
