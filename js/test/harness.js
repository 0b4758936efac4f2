// What the tests share: the wire vectors, and the live agent that
// client/langs_test.go (go test -run TestNode ./client/) starts for them.

import { readFileSync } from 'node:fs';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

export const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Bytes from hex digits, whitespace ignored, text between single quotes taken literally. */
export function raw(s) {
	return Buffer.concat(s.split("'").map((p, i) => (i % 2 ? Buffer.from(p, 'utf8') : Buffer.from(p.replace(/\s+/g, ''), 'hex'))));
}

// The fields that are bytes (base64 in vectors.json) and 64-bit integers
// (BigInts here), by message type.
const BYTES = { secret: ['value'], put: ['value'], put_credential: ['value'], hmac: ['message'], sign: ['query', 'body'], signed: ['query', 'body'] };
const WIDE = ['expires', 'uptime_ms', 'backend_since', 'last_ok', 'prev_until', 'retired', 'expires_ms'];

/** The shared vectors: { name, frame, id, type, fields }. */
export function vectors() {
	// 64-bit numbers lose precision in JSON.parse: read them as strings.
	const text = readFileSync(join(REPO, 'agent', 'wire', 'testdata', 'vectors.json'), 'utf8')
		.replace(/("(?:expires|uptime_ms|backend_since|last_ok|prev_until|retired|expires_ms)":)(-?\d+)/g, '$1"$2"');
	return JSON.parse(text).vectors.map((v) => {
		const fields = structuredClone(v.message);
		const wide = (o) => {
			for (const k of Object.keys(o)) {
				if (WIDE.includes(k)) {
					o[k] = BigInt(o[k]);
				} else if (Array.isArray(o[k])) {
					o[k].forEach((x) => typeof x === 'object' && wide(x));
				}
			}
		};
		wide(fields);
		for (const k of BYTES[v.type] ?? []) {
			fields[k] = Buffer.from(fields[k], 'base64');
		}
		return { name: v.name, frame: raw(v.frame), id: v.id, type: v.type, fields };
	});
}

export const SOCKET = process.env.KEYWARD_SOCKET;
const CONTROL = process.env.KEYWARD_TEST_CONTROL;

/**
 * Options for a test that needs the live agent: without one it skips, or
 * fails when KEYWARD_TEST_REQUIRE_HARDWARE=1.
 */
export function live() {
	if (SOCKET && CONTROL) {
		return {};
	}
	const why = 'no live agent: run go test -run TestNode ./client/';
	if (process.env.KEYWARD_TEST_REQUIRE_HARDWARE === '1') {
		throw new Error(why);
	}
	return { skip: why };
}

/** Runs one command on the test agent's control socket; an error answer throws. */
export function control(command) {
	return new Promise((resolve, reject) => {
		const s = net.createConnection(CONTROL, () => s.end(command + '\n'));
		let answer = '';
		s.on('data', (d) => { answer += d; });
		s.on('error', reject);
		s.on('close', () => {
			answer = answer.trim();
			if (answer === 'ok' || answer.startsWith('ok ')) {
				resolve(answer.slice(3));
			} else {
				reject(new Error(`control ${command}: ${answer}`));
			}
		});
	});
}
