// Watching against the live agent: rotations, restarts, a revoked permission.

import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import * as keyward from '../index.js';
import { control, live } from './harness.js';

const WAIT = 10000; // ms a change may take to arrive

describe('watch', live(), () => {
	const rotate = async (name) => Number(await control(`rotate ${name}`));

	test('a rotation', async () => {
		const c = await keyward.Client.connect();
		const w = await c.watch('app/rotating', 'app/plain');
		const v = await rotate('app/rotating');
		assert.deepEqual(await w.get(WAIT), { name: 'app/rotating', version: v });
		assert.equal((await c.get('app/rotating')).value.toString(), `rotating@v${v}`);
		assert.equal(await w.get(200), null);
		w.close();
		c.close();
	});

	test('across a restart, what changed while away is reported once', async () => {
		const c = await keyward.Client.connect();
		const w = await c.watch('app/rotating');
		await control('restart');
		let v = await rotate('app/rotating');
		assert.deepEqual(await w.get(WAIT), { name: 'app/rotating', version: v });
		await control('stop');
		v = await rotate('app/rotating');
		await control('start');
		assert.deepEqual(await w.get(WAIT), { name: 'app/rotating', version: v });
		assert.equal(await w.get(200), null);
		v = await rotate('app/rotating');
		assert.deepEqual(await w.get(WAIT), { name: 'app/rotating', version: v });
		w.close();
		c.close();
	});

	test('a subscription refused after a restart ends the watch with Denied', async () => {
		const c = await keyward.Client.connect();
		const w = await c.watch('app/rotating');
		try {
			await control('policy revoked');
			await control('restart');
			await assert.rejects(w.get(WAIT), keyward.Denied);
			await assert.rejects(async () => {
				for await (const ch of w) {
					assert.fail(`a change after the watch ended: ${ch}`);
				}
			}, keyward.Denied);
		} finally {
			await control('policy default');
			w.close();
			c.close();
		}
	});

	test('denied at once, and closing', async () => {
		const c = await keyward.Client.connect();
		await assert.rejects(c.watch('other/hidden'), keyward.Denied);
		assert.throws(() => new keyward.Watch(c, []), keyward.BadRequest);
		const w = await c.watch('app/plain');
		w.close();
		assert.equal(await w.get(WAIT), null);
		const seen = [];
		for await (const ch of w) {
			seen.push(ch);
		}
		assert.deepEqual(seen, []);
		c.close();
	});
});
