// Latency of the Node.js client against a running agent, beside an
// in-process HMAC in the same run, and what attach adds to a ccxt
// createOrder (scripts/bench-clients.sh runs it).
//
// Usage: KEYWARD_SOCKET=... node bench.js SECRET CREDENTIAL [N]
// Prints one JSON object: p50 and p99 in microseconds of each operation.
// ccxt's fetch is replaced by one that answers at once: nothing goes to the
// network, and what is measured is ccxt's own work, plus the agent's.

import { createHmac } from 'node:crypto';
import ccxt from 'ccxt';
import { Client, attach } from '../index.js';

const ORDER = 'symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=30000.5&newClientOrderId=kw-1';

async function measure(f, n) {
	for (let i = 0; i < n / 10; i++) {
		await f(); // warm up
	}
	const ns = [];
	for (let i = 0; i < n; i++) {
		const t = process.hrtime.bigint();
		await f();
		ns.push(Number(process.hrtime.bigint() - t));
	}
	ns.sort((a, b) => a - b);
	return { p50_us: ns[Math.floor(n / 2)] / 1000, p99_us: ns[Math.floor((n * 99) / 100)] / 1000 };
}

// exchange returns a ccxt Binance that knows one market and whose fetch
// answers every request with a new order.
function exchange(opts) {
	const ex = new ccxt.binance({ ...opts, enableRateLimit: false });
	ex.setMarkets([{
		id: 'BTCUSDT', symbol: 'BTC/USDT', base: 'BTC', quote: 'USDT', baseId: 'BTC', quoteId: 'USDT', type: 'spot', spot: true,
		margin: false, swap: false, future: false, option: false, contract: false, active: true,
		precision: { amount: 0.00001, price: 0.01 }, limits: { amount: { min: 0.00001, max: 9000 }, price: { min: 0.01, max: 1000000 }, cost: { min: 5 } },
		info: { orderTypes: ['LIMIT', 'MARKET'] },
	}]);
	ex.fetch = async () => ({
		symbol: 'BTCUSDT', orderId: 1, clientOrderId: 'kw', transactTime: 1700000000123, price: '30000.00', origQty: '0.00100',
		executedQty: '0', cummulativeQuoteQty: '0', status: 'NEW', timeInForce: 'GTC', type: 'LIMIT', side: 'BUY',
	});
	return ex;
}

const [secret, credential, count] = process.argv.slice(2);
const n = Number(count ?? 20000);
const key = Buffer.alloc(64, 'k');
const c = await Client.connect();
const out = { node: process.version };
out.hmac_in_process = await measure(() => createHmac('sha256', key).update(`timestamp=1700000000123&${ORDER}`).digest('hex'), n);
out.get = await measure(async () => (await c.get(secret)).wipe(), n);
out.sign = await measure(() => c.sign(credential, { method: 'POST', host: 'api.binance.com', path: '/api/v3/order', body: ORDER }), n);
const plain = exchange({ apiKey: 'bench', secret: 'b'.repeat(64) });
const attached = await attach(exchange(), credential, { client: c });
const order = (ex) => () => ex.createOrder('BTC/USDT', 'limit', 'buy', 0.001, 30000);
out.ccxt_create_order_plain = await measure(order(plain), n / 4);
out.ccxt_create_order_attached = await measure(order(attached), n / 4);
c.close();
console.log(JSON.stringify(out));
