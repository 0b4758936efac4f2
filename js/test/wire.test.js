// The codec against the vectors shared with the Go and Python tests, and
// against damaged frames.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as wire from '../lib/wire.js';
import { ProtocolError } from '../lib/errors.js';
import { raw, vectors } from './harness.js';

function setLength(frame, n) {
	const f = Buffer.from(frame);
	f.writeUInt32BE(n, 0);
	return f;
}

test('the vectors cover every type', () => {
	assert.deepEqual(new Set(vectors().map((v) => v.type)), new Set(Object.keys(wire.MESSAGES)));
});

test('decode and encode every vector', () => {
	for (const v of vectors()) {
		const [type, id, fields] = wire.decode(v.frame);
		assert.deepEqual([type, id, fields], [v.type, v.id, v.fields], v.name);
		assert.deepEqual(wire.encode(v.type, v.id, v.fields), v.frame, v.name);
	}
});

test('damaged frames', () => {
	for (const v of vectors()) {
		const f = v.frame;
		for (let i = 0; i < f.length; i++) {
			assert.throws(() => wire.decode(f.subarray(0, i)), ProtocolError, `${v.name} cut at ${i}`);
			if (i >= wire.HEADER_SIZE) {
				assert.throws(() => wire.decode(setLength(f.subarray(0, i), i - 4)), ProtocolError, `${v.name} truncated at ${i}`);
			}
		}
		const long = Buffer.concat([f, Buffer.alloc(1)]);
		assert.throws(() => wire.decode(long), ProtocolError);
		assert.throws(() => wire.decode(setLength(long, long.length - 4)), ProtocolError, `${v.name} trailing`);
		for (const n of [0, 1, 4, wire.MAX_FRAME_SIZE + 1, 0xffffffff]) {
			assert.throws(() => wire.decode(setLength(f, n)), ProtocolError, `${v.name} length ${n}`);
		}
	}
});

test('invalid frames say why', () => {
	for (const [frame, why] of [
		["00000005 7e 00000001", /unknown message type 0x7e/],
		["00000005 80 00000001", /unknown message type 0x80/],
		["00000006 01 00000001 00", /0 versions/],
		["00000009 83 00000001 ffffffff", /count 4294967295/],
		["00000017 84 00000006 02 03 'tpm' 00000000 0000000000000000 00", /healthy is 2/],
		["00000019 08 00000001 01 'x' 04 0000000000000000 00000000 00000001 'v'", /flags 0x04 has undefined bits/],
		["00000017 82 00000001 01 'x' 00000001 0000000000000000 ffffffff", /value length 4294967295/],
		["0000000d 0c 00000001 01 'x' 00000000 03 01", /hash is 3/],
	]) {
		assert.throws(() => wire.decode(raw(frame)), (e) => e instanceof ProtocolError && why.test(e.message), String(why));
	}
});

// A small seeded generator, so a failure can be replayed.
function random(seed) {
	let x = seed;
	return (n) => {
		x = (Math.imul(x, 1103515245) + 12345) >>> 0;
		return (x >>> 8) % n;
	};
}

test('damaged copies either round-trip or throw ProtocolError', () => {
	const rnd = random(11);
	const frames = vectors().map((v) => v.frame);
	let decoded = 0;
	for (let n = 0; n < 20000; n++) {
		const f = [...frames[rnd(frames.length)]];
		for (let k = 1 + rnd(3); k > 0; k--) {
			const i = rnd(f.length);
			switch (rnd(3)) {
			case 0: f[i] = rnd(256); break;
			case 1: f.splice(i, 0, rnd(256)); break;
			default: if (f.length > 1) f.splice(i, 1);
			}
		}
		const b = Buffer.from(f);
		if (rnd(10) < 7 && b.length >= 4) {
			b.writeUInt32BE(b.length - 4, 0);
		}
		let got;
		try {
			got = wire.decode(b);
		} catch (e) {
			assert.ok(e instanceof ProtocolError, `${b.toString('hex')}: ${e}`);
			continue;
		}
		decoded++;
		assert.deepEqual(wire.encode(got[0], got[1], got[2]), b, b.toString('hex'));
	}
	assert.ok(decoded > 1000, `${decoded} decoded`);
});

test('limits', () => {
	const big = { name: 's'.repeat(255), version: 1, expires: 0n, value: Buffer.alloc(wire.MAX_SECRET_SIZE, 0xa5) };
	assert.deepEqual(wire.decode(wire.encode('secret', 1, big))[2], big);
	assert.throws(() => wire.encode('secret', 1, { ...big, value: Buffer.alloc(wire.MAX_SECRET_SIZE + 1) }), RangeError);
	assert.throws(() => wire.encode('get', 1, { name: 'n'.repeat(256), version: 0 }), RangeError);
	assert.throws(() => wire.encode('get', 1, { name: 'n', version: -1 }), RangeError);
});
