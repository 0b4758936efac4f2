// Types of the keyward package (index.js). See js/README.md.

/** The agent's socket when neither an argument nor $KEYWARD_SOCKET names one. */
export const DEFAULT_SOCKET: string;
/** The environment variable that names the agent's socket. */
export const SOCKET_ENV: string;

export interface ClientOptions {
	/** Milliseconds each call may take, waiting for a connection included; default 10000, 0: no limit. */
	timeout?: number;
	/** The most connections open at once; default 16. */
	maxConnections?: number;
}

/** A secret value. Call wipe() when done; it never prints its value. */
export class Secret {
	readonly name: string;
	readonly version: number;
	/** When the value must no longer be used; null: never. */
	readonly expires: Date | null;
	/** The value: the Secret's own memory, do not keep it past wipe(). */
	readonly value: Buffer;
	/** Zeroes the value and drops it. */
	wipe(): void;
	toString(): string;
	toJSON(): string;
}

export interface Status {
	healthy: boolean;
	backend: string;
	secrets: number;
	uptimeMs: number;
	agent: string;
}

export interface Problem {
	name: string;
	state: 'stale' | 'unavailable' | 'damaged' | 'unknown';
	serving: number;
	newest: number;
}

export interface Health {
	backendOk: boolean;
	backendSince: Date | null;
	lastOk: Date | null;
	secrets: number;
	problems: Problem[];
}

export interface Credential {
	version: number;
	exchange: string;
	apiKey: string;
	keyType: 'hmac' | 'ed25519' | 'ecdsa-p256' | 'rsa' | string;
}

export interface SignRequest {
	/** GET, POST, PUT, DELETE, or WS for a WebSocket login or signed WebSocket request. */
	method: string;
	/** The API host, lower case, e.g. api.binance.com. */
	host: string;
	/** The request path, e.g. /api/v3/order; for WS what is signed (session.logon, order.place, login). */
	path: string;
	/** The raw query string without '?', exactly as it will be sent, without authentication parameters. */
	query?: string | Uint8Array;
	/** The raw body, the same way. */
	body?: string | Uint8Array;
	/** Binance and Bybit: how long the exchange accepts the request; 0: its default. */
	recvWindowMs?: number;
	/** The credential's version; 0: the current one. */
	version?: number;
}

export interface Signed {
	version: number;
	exchange: string;
	apiKey: string;
	/** Headers to set, in order, replacing any of the same name. */
	headers: [string, string][];
	/** The query string to send instead of the caller's, without '?'. */
	query: string;
	/** The body to send instead of the caller's. */
	body: string;
	/** For WS: the parameters of the login or request message. */
	params: [string, string][];
	/** Unix milliseconds after which the exchange refuses the request; 0: it does not say. */
	expiresMs: number;
}

export interface HMACOptions {
	hash?: 'sha256' | 'sha512';
	encoding?: 'hex' | 'base64';
	version?: number;
}

export interface Change {
	name: string;
	/** The new current version; 0: no longer served. */
	version: number;
}

/** A client of the keyward agent; safe for any number of concurrent requests. */
export class Client {
	/** Connects to path, or $KEYWARD_SOCKET, or DEFAULT_SOCKET, and checks the agent answers. */
	static connect(path?: string, opts?: ClientOptions): Promise<Client>;
	private constructor(path?: string, opts?: ClientOptions);
	readonly path: string;
	readonly timeout: number;
	readonly maxConnections: number;
	close(): void;
	get(name: string): Promise<Secret>;
	getVersion(name: string, version: number): Promise<Secret>;
	list(): Promise<string[]>;
	status(): Promise<Status>;
	health(): Promise<Health>;
	watch(...names: string[]): Promise<Watch>;
	describe(name: string): Promise<Credential>;
	sign(name: string, req: SignRequest): Promise<Signed>;
	hmac(name: string, message: string | Uint8Array, opts?: HMACOptions): Promise<string>;
}

/** Changes of watched secrets: an async iterator that resubscribes after an agent restart. */
export class Watch implements AsyncIterableIterator<Change> {
	private constructor(client: Client, names: string[]);
	[Symbol.asyncIterator](): Watch;
	next(): Promise<IteratorResult<Change, undefined>>;
	return(): Promise<IteratorResult<Change, undefined>>;
	/** The next change within timeoutMs; null on timeout or once closed. */
	get(timeoutMs?: number): Promise<Change | null>;
	close(): void;
}

/** The base class of every error of this package. */
export class KeywardError extends Error {}
/** An error answer from the agent; code is the protocol's stable error code. */
export class AgentError extends KeywardError {
	readonly code: number;
	/** The agent's own message, for people. */
	readonly agentMessage: string;
}
export class NotFound extends AgentError {}
export class Denied extends AgentError {}
export class Expired extends AgentError {}
export class Unavailable extends AgentError {}
export class BadRequest extends AgentError {}
export class RateLimited extends AgentError {}
export class InternalError extends AgentError {}
export class ProtocolError extends KeywardError {}
export class ClientClosed extends KeywardError {}

/** The protocol codec (docs/protocol.md), for tests and tools. */
export namespace wire {
	const VERSION_1: number;
	const MAX_FRAME_SIZE: number;
	const MAX_SECRET_SIZE: number;
	const MESSAGES: Record<string, [number, unknown[]]>;
	function encode(type: string, id: number, fields: Record<string, unknown>): Buffer;
	function decode(frame: Buffer): [string, number, Record<string, unknown>];
}

export interface AttachOptions {
	/** The client to sign through; default: Client.connect(). */
	client?: Client;
	/** For an exchange without a keyward scheme: its API key id (public). */
	apiKey?: string;
	/** For an exchange without a keyward scheme that has one: its password or passphrase. */
	password?: string;
}

/** What a ccxt exchange holds instead of the secret once attached. */
export const PLACEHOLDER: string;

/** The request could not be signed as ccxt built it, and was not sent. */
export class AttachError extends KeywardError {}

/**
 * Attaches a ccxt exchange object (REST or ccxt.pro) to the agent: every
 * private request it builds is signed through the agent with the
 * credential name, and the object never holds the secret. Resolves to the
 * same object.
 */
export function attach<T extends object>(exchange: T, name: string, opts?: AttachOptions): Promise<T>;
