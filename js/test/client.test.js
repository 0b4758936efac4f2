// The client against the live agent (client/langs_test.go).

import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { inspect } from 'node:util';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as keyward from '../index.js';
import * as wire from '../lib/wire.js';
import { SOCKET, control, live } from './harness.js';

const { Client } = keyward;

async function expectError(p, Cls, code) {
	await assert.rejects(p, (e) => {
		assert.ok(e instanceof Cls, `${e} is not a ${Cls.name}`);
		assert.ok(e instanceof keyward.AgentError && e instanceof keyward.KeywardError);
		assert.equal(e.code, code);
		assert.ok(e.agentMessage);
		return true;
	});
}

describe('client', live(), () => {
	test('the socket comes from $KEYWARD_SOCKET', async () => {
		const c = await Client.connect();
		assert.equal(c.path, SOCKET);
		c.close();
	});

	test('get', async () => {
		const c = await Client.connect();
		const s = await c.get('app/plain');
		assert.equal(s.value.toString(), 'plain-value-v1');
		assert.deepEqual([s.name, s.version, s.expires], ['app/plain', 1, null]);
		assert.equal((await c.getVersion('app/plain', 1)).value.toString(), 'plain-value-v1');
		for (const text of [String(s), `${s}`, inspect(s), JSON.stringify({ s }), inspect([s])]) {
			assert.ok(!text.includes('plain-value'), text);
			assert.ok(text.includes('app/plain'), text);
		}
		const v = s.value;
		s.wipe();
		assert.deepEqual(v, Buffer.alloc(14));
		assert.equal(s.value.length, 0);
		c.close();
	});

	test('every error code', async () => {
		const c = await Client.connect();
		for (const [name, version, Cls, code] of [
			['other/hidden', 0, keyward.Denied, 2],
			['app/absent', 0, keyward.NotFound, 1],
			['app/plain', 7, keyward.NotFound, 1],
			['app/retired', 1, keyward.Expired, 3],
			['Bad/Name', 0, keyward.BadRequest, 5],
			['app/damaged', 0, keyward.InternalError, 7],
		]) {
			await expectError(c.getVersion(name, version), Cls, code);
		}
		// limited/* allows one request a second: the second is refused, and
		// the connection the agent then closes is replaced without a fuss.
		assert.equal((await c.get('limited/one')).value.toString(), 'limited@v1');
		await expectError(c.get('limited/one'), keyward.RateLimited, 6);
		assert.equal((await c.get('app/plain')).value.toString(), 'plain-value-v1');
		// A rotation the agent could not load while its backend failed,
		// the previous version retired: nothing to serve.
		try {
			await control('outage app/stale');
			await expectError(c.get('app/stale'), keyward.Unavailable, 4);
		} finally {
			await control('restart');
		}
		c.close();
	});

	test('local errors', async () => {
		const c = await Client.connect();
		await assert.rejects(c.get(''), keyward.BadRequest);
		await assert.rejects(c.get('n'.repeat(256)), keyward.BadRequest);
		c.close();
		await assert.rejects(c.get('app/plain'), keyward.ClientClosed);
		await assert.rejects(Client.connect(join(mkdtempSync(join(tmpdir(), 'kw-')), 'none.sock')), keyward.Unavailable);
	});

	test('list, status, health', async () => {
		const c = await Client.connect();
		const names = await c.list();
		assert.ok(names.includes('app/plain') && names.includes('app/rotating'));
		assert.ok(!names.includes('other/hidden') && !names.includes('limited/one'));
		const st = await c.status();
		assert.equal(st.healthy, true);
		assert.equal(st.backend, 'pkcs11');
		assert.equal(st.agent, 'keyward test');
		assert.ok(st.secrets > 0);
		const h = await c.health();
		assert.equal(h.backendOk, true);
		assert.deepEqual(h.problems.filter((p) => p.name === 'app/damaged').map((p) => [p.state, p.newest]), [['damaged', 1]]);
		c.close();
	});

	test('many concurrent requests on one client', async () => {
		const c = await Client.connect();
		const jobs = [];
		for (let i = 0; i < 400; i++) {
			jobs.push(i % 7 === 0
				? c.list().then((n) => assert.ok(n.includes('app/plain')))
				: i % 2
					? c.get('app/plain').then((s) => assert.equal(s.value.toString(), 'plain-value-v1'))
					: assert.rejects(c.get('app/absent'), keyward.NotFound));
		}
		await Promise.all(jobs);
		c.close();
	});

	test('a request after the agent restarted is sent again; while it is down, Unavailable', async () => {
		const c = await Client.connect();
		assert.equal((await c.get('app/plain')).value.toString(), 'plain-value-v1');
		await control('restart');
		assert.equal((await c.get('app/plain')).value.toString(), 'plain-value-v1');
		await control('stop');
		try {
			await assert.rejects(c.get('app/plain'), keyward.Unavailable);
		} finally {
			await control('start');
		}
		assert.equal((await c.get('app/plain')).value.toString(), 'plain-value-v1');
		c.close();
	});
});

// A socket that answers hello, then each request with the frame answer(id)
// gives: the client's handling of answers the real agent does not send.
async function fakeAgent(t, answer) {
	const path = join(mkdtempSync(join(tmpdir(), 'kw-')), 'fake.sock');
	const server = net.createServer((s) => {
		let buf = Buffer.alloc(0);
		s.on('error', () => {});
		s.on('data', (d) => {
			buf = Buffer.concat([buf, d]);
			while (buf.length >= 9 && buf.length >= 4 + buf.readUInt32BE(0)) {
				const id = buf.readUInt32BE(5);
				const type = buf[4];
				buf = buf.subarray(4 + buf.readUInt32BE(0));
				if (type === 0x01) {
					s.write(wire.encode('hello_ok', id, { version: 1, agent: 'fake' }));
				} else if (answer) {
					s.write(answer(id));
				}
			}
		});
	});
	await new Promise((r) => server.listen(path, r));
	t.after(() => server.close());
	return path;
}

describe('answers the agent does not send', () => {
	const secret = { name: 'app/plain', version: 1, expires: 0n, value: Buffer.from('x') };
	const trailing = (f) => {
		const b = Buffer.concat([f, Buffer.alloc(1)]);
		b.writeUInt32BE(b.length - 4, 0);
		return b;
	};
	for (const [why, answer, Cls, timeout] of [
		['unknown error code', (id) => wire.encode('error', id, { code: 999, message: 'new' }), keyward.AgentError],
		['wrong id', (id) => wire.encode('secret', id + 1, secret), keyward.ProtocolError],
		['trailing byte', (id) => trailing(wire.encode('secret', id, secret)), keyward.ProtocolError],
		['wrong type', (id) => wire.encode('names', id, { names: [] }), keyward.ProtocolError],
		['wrong name', (id) => wire.encode('secret', id, { ...secret, name: 'app/other' }), keyward.ProtocolError],
		['huge length', (id) => Buffer.from([0, 0x10, 0, 1, 0x82, 0, 0, 0, id]), keyward.ProtocolError],
		['no answer', null, keyward.Unavailable, 200],
	]) {
		test(why, async (t) => {
			const c = await Client.connect(await fakeAgent(t, answer), { timeout: timeout ?? 5000 });
			await assert.rejects(c.get('app/plain'), (e) => {
				assert.ok(e instanceof Cls, `${e}`);
				if (why === 'unknown error code') {
					assert.equal(e.constructor, keyward.AgentError);
					assert.deepEqual([e.code, e.agentMessage], [999, 'new']);
				}
				return true;
			});
			c.close();
		});
	}
});
