// Differential tests against ccxt itself: each private call, built by ccxt
// with the plaintext secret and by ccxt attached to the live agent, must
// give the same request, byte for byte (method, URL, headers in order,
// body; or the WebSocket message). Both sides run with ccxt's clock pinned
// and the agent's clock pinned to the same instant; the nonces the agent
// chose (Kraken's, Coinbase's JWT nonce) are read from its request and
// given to the plain side. fetch and watch are replaced by recorders:
// nothing goes to the network.

import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import ccxt from 'ccxt';
import { Client, Denied } from '../index.js';
import { attach, AttachError } from '../index.js';
import { control, live } from './harness.js';

const MS = 1700000000123;

class Recorded extends Error {}

// pin fixes ccxt's clock, nonce and random bytes, and replaces fetch and
// watch with recorders that keep what would have been sent.
function pin(ex, ms, { nonce = ms, random } = {}) {
	const rec = { sent: null };
	ex.enableRateLimit = false;
	ex.milliseconds = () => ms;
	ex.seconds = () => Math.floor(ms / 1000);
	ex.nonce = () => nonce;
	if (random !== undefined) {
		ex.randomBytes = () => random;
	}
	ex.fetch = async (url, method, headers, body) => {
		rec.sent = { method, url, headers: Object.entries(headers ?? {}), body: body ?? null };
		throw new Recorded();
	};
	ex.watch = (url, messageHash, message) => {
		rec.sent = { url, message: JSON.stringify(message) };
		return new Promise(() => {}); // no answer ever comes
	};
	return rec;
}

// run makes the call and resolves once the recorder holds what it sent,
// or with the error that stopped it.
async function run(ex, rec, call) {
	const done = (async () => {
		try {
			await call(ex);
		} catch (e) {
			if (!(e instanceof Recorded)) {
				throw e;
			}
		}
	})();
	for (let i = 0; i < 500 && rec.sent === null; i++) {
		await Promise.race([done, new Promise((r) => setTimeout(r, 10))]);
	}
	if (rec.sent === null) {
		await done;
		throw new Error('the call sent nothing');
	}
	done.catch(() => {}); // a WebSocket call waits for an answer that never comes
	return rec.sent;
}

// Orders and the like, as the Go differential test (agent/exchange/ccxt_test.go) has them.
const order = { symbol: 'BTCUSDT', side: 'BUY', type: 'LIMIT', timeInForce: 'GTC', quantity: '0.001', price: '30000.5', newClientOrderId: 'kw-1' };
const bybitOrder = { category: 'spot', symbol: 'BTCUSDT', side: 'Buy', orderType: 'Limit', qty: '0.01', price: '30000', orderLinkId: 'kw-3' };
const okxOrder = { instId: 'BTC-USDT', tdMode: 'cash', side: 'buy', ordType: 'limit', sz: '0.01', px: '30000', clOrdId: 'kw4' };
const cbOrder = { client_order_id: 'kw-7', product_id: 'BTC-USD', side: 'BUY', order_configuration: { limit_limit_gtc: { base_size: '0.001', limit_price: '30000.00', post_only: false } } };

const rest = (call, params) => (ex) => ex[call](structuredClone(params));

// cases: [secret name, ccxt class, pro?, what, call]
const cases = [];
for (const kt of ['hmac', 'ed25519', 'rsa']) {
	cases.push(
		[`binance/${kt}`, 'binance', false, 'balance', rest('privateGetAccount', {})],
		[`binance/${kt}`, 'binance', false, 'create order', rest('privatePostOrder', order)],
		[`binance/${kt}`, 'binance', true, 'WebSocket API user data stream', (ex) => ex.ensureUserDataStreamWsSubscribeSignature('spot')],
	);
}
cases.push(
	['binance/hmac', 'binance', false, 'cancel order', rest('privateDeleteOrder', { symbol: 'BTCUSDT', origClientOrderId: 'kw-1' })],
	['binance/hmac', 'binance', false, 'open orders', rest('privateGetOpenOrders', { symbol: 'BTCUSDT' })],
	['binance/hmac', 'binanceusdm', false, 'futures create order', rest('fapiPrivatePostOrder', { symbol: 'BTCUSDT', side: 'SELL', type: 'MARKET', quantity: '0.002', newClientOrderId: 'kw-2' })],
	['binance/hmac', 'binanceusdm', false, 'futures balance', rest('fapiPrivateV2GetBalance', {})],
	['binance/hmac', 'binanceusdm', false, 'futures cancel', rest('fapiPrivateDeleteOrder', { symbol: 'BTCUSDT', orderId: '123456' })],

	['bybit/hmac', 'bybit', false, 'balance', rest('privateGetV5AccountWalletBalance', { accountType: 'UNIFIED' })],
	['bybit/hmac', 'bybit', false, 'create order', rest('privatePostV5OrderCreate', bybitOrder)],
	['bybit/hmac', 'bybit', false, 'cancel order', rest('privatePostV5OrderCancel', { category: 'spot', symbol: 'BTCUSDT', orderLinkId: 'kw-3' })],
	['bybit/hmac', 'bybit', false, 'open orders', rest('privateGetV5OrderRealtime', { category: 'spot', symbol: 'BTCUSDT' })],
	['bybit/hmac', 'bybit', false, 'open orders, no parameters', rest('privateGetV5OrderRealtime', {})],
	['bybit/rsa', 'bybit', false, 'balance', rest('privateGetV5AccountWalletBalance', { accountType: 'UNIFIED' })],
	['bybit/rsa', 'bybit', false, 'create order', rest('privatePostV5OrderCreate', bybitOrder)],
	['bybit/hmac', 'bybit', true, 'WebSocket login', (ex) => ex.authenticate('wss://stream.bybit.com/v5/private')],

	['okx/main', 'okx', false, 'balance', rest('privateGetAccountBalance', {})],
	['okx/main', 'okx', false, 'balance of one currency', rest('privateGetAccountBalance', { ccy: 'BTC' })],
	['okx/main', 'okx', false, 'create order', rest('privatePostTradeOrder', okxOrder)],
	['okx/main', 'okx', false, 'cancel order', rest('privatePostTradeCancelOrder', { instId: 'BTC-USDT', clOrdId: 'kw4' })],
	['okx/main', 'okx', false, 'open orders', rest('privateGetTradeOrdersPending', { instType: 'SPOT' })],
	['okx/main', 'okx', false, 'batch orders', rest('privatePostTradeBatchOrders', [okxOrder, { ...okxOrder, instId: 'ETH-USDT', side: 'sell', ordType: 'market', clOrdId: 'kw6' }])],
	['okx/main', 'okx', true, 'WebSocket login', (ex) => ex.authenticate()],

	['kraken/main', 'kraken', false, 'balance', rest('privatePostBalance', {})],
	['kraken/main', 'kraken', false, 'create order', rest('privatePostAddOrder', { ordertype: 'limit', type: 'buy', volume: '1.25', pair: 'XBTUSD', price: '37500', cl_ord_id: 'kw-8' })],
	['kraken/main', 'kraken', false, 'cancel order', rest('privatePostCancelOrder', { txid: 'OQCLML-BW3P3-BUCMWZ' })],
	['kraken/main', 'kraken', false, 'open orders', rest('privatePostOpenOrders', { trades: 'true' })],
	['kraken/main', 'kraken', false, 'batch orders', rest('privatePostAddOrderBatch', { pair: 'XBTUSD', orders: [{ ordertype: 'limit', type: 'buy', volume: '1.0', price: '30000' }] })],
	['kraken/main', 'kraken', false, 'WebSocket token', rest('privatePostGetWebSocketsToken', {})],
);
for (const kt of ['ecdsa', 'ed25519']) {
	cases.push(
		[`coinbase/${kt}`, 'coinbase', false, 'balance', rest('v3PrivateGetBrokerageAccounts', {})],
		[`coinbase/${kt}`, 'coinbase', false, 'create order', rest('v3PrivatePostBrokerageOrders', cbOrder)],
		[`coinbase/${kt}`, 'coinbase', false, 'cancel orders', rest('v3PrivatePostBrokerageOrdersBatchCancel', { order_ids: ['0000-1111'] })],
		[`coinbase/${kt}`, 'coinbase', false, 'open orders', rest('v3PrivateGetBrokerageOrdersHistoricalBatch', { order_status: 'OPEN', product_id: 'BTC-USD' })],
		[`coinbase/${kt}`, 'coinbase', true, 'WebSocket login', (ex) => {
			ex.markets = {}; // subscribe loads markets first, from the network
			return ex.subscribe('user', true);
		}],
	);
}
// Exchanges without a scheme, through the agent's hmac.
cases.push(
	['generic/kucoin', 'kucoin', false, 'balance', rest('privateGetAccounts', {})],
	['generic/kucoin', 'kucoin', false, 'create order', rest('privatePostOrders', { clientOid: 'kw-9', side: 'buy', symbol: 'BTC-USDT', type: 'limit', price: '30000', size: '0.001' })],
	['generic/gate', 'gate', false, 'balance', rest('privateSpotGetAccounts', {})],
	['generic/gate', 'gate', false, 'create order', rest('privateSpotPostOrders', { currency_pair: 'BTC_USDT', side: 'buy', amount: '0.001', price: '30000', text: 't-kw10' })],
);

// The nonce the agent put in a Kraken request, and the JWT nonce of a
// Coinbase one: the plain side is given them.
function agentNonces(sent) {
	const out = {};
	const kraken = /^(?:nonce=|\{"nonce":")(\d+)/.exec(sent.body ?? '');
	if (kraken) {
		out.nonce = Number(kraken[1]);
	}
	const jwt = /(?:Bearer |"jwt":")([\w-]+)\./.exec((sent.message ?? '') + JSON.stringify(sent.headers ?? []));
	if (jwt) {
		out.random = JSON.parse(Buffer.from(jwt[1], 'base64url').toString()).nonce;
	}
	return out;
}

describe('ccxt attached to keyward sends what ccxt sends', live(), () => {
	let client;
	let creds;
	before(async () => {
		client = await Client.connect();
		creds = JSON.parse(readFileSync(process.env.KEYWARD_TEST_CREDENTIALS, 'utf8'));
	});
	const pros = [];
	after(async () => {
		await control('clock now');
		client.close();
		// ccxt.pro's clients hold timers until closed; what they waited
		// for (futures no one awaits among them) is rejected as closed by
		// the user.
		for (const ex of pros) {
			for (const c of Object.values(ex.clients)) {
				Object.values(c.futures).forEach((f) => f.catch(() => {}));
			}
		}
		await Promise.allSettled(pros.map((ex) => ex.close()));
	});

	cases.forEach(([name, cls, pro, what, call], i) => {
		test(`${name} ${cls} ${what}`, async () => {
			const ms = MS + i * 1000;
			await control(`clock ${ms}`);
			const Cls = pro ? ccxt.pro[cls] : ccxt[cls];
			const cred = creds[name];

			const attached = new Cls();
			const arec = pin(attached, ms);
			await attach(attached, name, { client, apiKey: cred.keyType ? undefined : cred.apiKey, password: cred.keyType ? undefined : cred.password });
			assert.equal(attached.apiKey, cred.apiKey);
			assert.notEqual(attached.secret, cred.secret);
			const got = await run(attached, arec, call);

			const plain = new Cls({ apiKey: cred.apiKey, secret: cred.secret, password: cred.password });
			const prec = pin(plain, ms, agentNonces(got));
			if (pro) {
				pros.push(attached, plain);
			}
			if (pro && name === 'coinbase/ed25519') {
				// ccxt's WebSocket client takes an Ed25519 key for a legacy
				// HMAC key (a ccxt bug): log in as its JWT branch would, with
				// the flag its REST client passes for Ed25519 keys.
				plain.createWSAuth = () => ({ jwt: plain.createAuthToken(plain.seconds(), undefined, undefined, true) });
			}
			const want = await run(plain, prec, call);

			assert.deepEqual(got, want);
			assert.ok(!JSON.stringify(got).includes(cred.secret.slice(0, 16)));
		});
	});
});

describe('what the policy does not allow is never sent', live(), () => {
	let client;
	before(async () => {
		client = await Client.connect();
	});
	after(() => client.close());

	for (const [name, cls, what, call] of [
		['binance/hmac', 'binance', 'a withdrawal', rest('sapiPostCapitalWithdrawApply', { coin: 'BTC', address: 'bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh', amount: '1', network: 'BTC' })],
		['binance/hmac', 'binance', 'withdrawal parameters on an order', rest('privatePostOrder', { ...order, address: 'bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh', amount: '1' })],
		['bybit/hmac', 'bybit', 'a withdrawal', rest('privatePostV5AssetWithdrawCreate', { coin: 'USDT', chain: 'ETH', address: '0x00000000000000000000000000000000deadbeef', amount: '10' })],
		['okx/main', 'okx', 'a withdrawal', rest('privatePostAssetWithdrawal', { ccy: 'USDT', amt: '10', dest: '4', toAddr: '0x00000000000000000000000000000000deadbeef', chain: 'USDT-ERC20' })],
		['kraken/main', 'kraken', 'a withdrawal', rest('privatePostWithdraw', { asset: 'XBT', key: 'my-wallet', amount: '1' })],
		['coinbase/ecdsa', 'coinbase', 'a send', rest('v2PrivatePostAccountsAccountIdTransactions', { account_id: 'a1', type: 'send', to: 'bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh', amount: '1', currency: 'BTC' })],
		['binance/hmac', 'binance', 'an endpoint no rule names', rest('privateGetMyTrades', { symbol: 'BTCUSDT' })],
	]) {
		test(`${name} ${what}`, async () => {
			const ex = new ccxt[cls]();
			const rec = pin(ex, MS);
			await attach(ex, name, { client });
			await assert.rejects(call(ex), Denied);
			assert.equal(rec.sent, null, 'something was sent');
		});
	}

	test('an exchange given its secret, or attached twice, is refused', async () => {
		await assert.rejects(attach(new ccxt.binance({ apiKey: 'k', secret: 's' }), 'binance/hmac', { client }), /was given its secret/);
		const ex = await attach(new ccxt.binance(), 'binance/hmac', { client });
		await assert.rejects(attach(ex, 'binance/hmac', { client }), /attached already/);
	});

	test('a credential of another exchange is refused at attach', async () => {
		await assert.rejects(attach(new ccxt.okx(), 'binance/hmac', { client }), /binance credential; okx needs a okx one/);
	});

	test('an exchange without a scheme needs its API key, and the hmac permission', async () => {
		await assert.rejects(attach(new ccxt.kucoin(), 'generic/kucoin', { client }), /no signing scheme for kucoin/);
		const ex = new ccxt.gate();
		const rec = pin(ex, MS);
		await attach(ex, 'binance/hmac', { client, apiKey: 'k' }); // a credential granted sign, not hmac
		await assert.rejects(ex.privateSpotGetAccounts(), Denied);
		assert.equal(rec.sent, null);
	});

	test('a signature ccxt transforms is not sent', async () => {
		const ex = new ccxt.gate();
		const rec = pin(ex, MS);
		await attach(ex, 'generic/gate', { client, apiKey: 'k' });
		const sign = ex.sign;
		ex.sign = function (...args) {
			const r = sign.apply(this, args);
			r.headers.SIGN = r.headers.SIGN.toUpperCase();
			return r;
		};
		await assert.rejects(ex.privateSpotGetAccounts(), AttachError);
		assert.equal(rec.sent, null);
	});
});
