// A bot written against index.d.ts as js/README.md shows it: tsc --strict
// must accept every use below and refuse each line under a ts-expect-error
// marker (a marker with nothing to refuse is an error too). Compiled only,
// never run: test/types.test.js runs tsc on it.

import {
	Client, Secret, Watch, attach, wire, DEFAULT_SOCKET, SOCKET_ENV, PLACEHOLDER,
	KeywardError, AgentError, NotFound, Denied, Expired, Unavailable, BadRequest, RateLimited, InternalError,
	ProtocolError, ClientClosed, AttachError,
} from '../../index.js';
import type { Change, Credential, Health, Signed, SignRequest, Status } from '../../index.js';

export async function bot(): Promise<void> {
	const socket: string = process.env[SOCKET_ENV] ?? DEFAULT_SOCKET;
	const client = await Client.connect(socket, { timeout: 2000, maxConnections: 4 });

	const secret: Secret = await client.get('binance/mm-prod');
	const value: Buffer = secret.value;
	const expires: Date | null = secret.expires;
	secret.wipe();
	await client.getVersion('binance/mm-prod', 2);

	const names: string[] = await client.list();
	const status: Status = await client.status();
	const healthy: boolean = status.healthy;
	const health: Health = await client.health();
	const stale = health.problems.filter((p) => p.state === 'stale').map((p) => p.name);

	const req: SignRequest = { method: 'POST', host: 'api.binance.com', path: '/api/v3/order', query: 'symbol=BTCUSDT&side=BUY', recvWindowMs: 5000 };
	const signed: Signed = await client.sign('binance/mm-prod', req);
	const headers = new Map<string, string>(signed.headers);
	const url = `https://${req.host}${req.path}?${signed.query}`;
	const cred: Credential = await client.describe('binance/mm-prod');
	const mac: string = await client.hmac('kucoin/bot', 'GET/api/v1/accounts', { hash: 'sha256', encoding: 'base64' });

	const watch: Watch = await client.watch('binance/mm-prod', 'okx/exec');
	for await (const change of watch) {
		const c: Change = change;
		if (c.version === 0) break;
	}
	const next: Change | null = await watch.get(1000);
	watch.close();

	try {
		await client.get('okx/exec');
	} catch (e) {
		if (e instanceof Denied || e instanceof NotFound) {
			const code: number = e.code;
			const why: string = e.agentMessage;
		} else if (e instanceof Expired || e instanceof Unavailable || e instanceof RateLimited) {
			const base: AgentError = e;
		} else if (e instanceof BadRequest || e instanceof InternalError) {
			const base: KeywardError = e;
		} else if (e instanceof ProtocolError || e instanceof ClientClosed || e instanceof AttachError) {
			const base: Error = e;
		}
	}

	class Exchange { apiKey = ''; secret = ''; }
	const exchange: Exchange = await attach(new Exchange(), 'binance/mm-prod', { client });
	const placeholder: string = PLACEHOLDER;
	await attach(new Exchange(), 'kucoin/bot', { apiKey: '6512a0f4', password: 'p' });

	const frame: Buffer = wire.encode('get', 1, { name: 'binance/mm-prod' });
	const [type, id, fields] = wire.decode(frame);
	client.close();

	// Misuse the types must refuse.
	// @ts-expect-error: a name is a string
	await client.get(42);
	// @ts-expect-error: the request needs a host and a path
	await client.sign('binance/mm-prod', { method: 'GET' });
	// @ts-expect-error: SHA-1 is not offered
	await client.hmac('kucoin/bot', 'm', { hash: 'sha1' });
	// @ts-expect-error: a Secret's value cannot be replaced
	secret.value = Buffer.alloc(0);
	// @ts-expect-error: a Client is made with Client.connect
	new Client();

	void [value, expires, names, healthy, stale, headers, url, cred, mac, next, exchange, placeholder, type, id, fields];
}
