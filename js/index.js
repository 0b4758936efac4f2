// keyward: the Node.js client of the keyward agent, and attach() for ccxt.
// See js/README.md.

export { Client, Secret, DEFAULT_SOCKET, SOCKET_ENV } from './lib/client.js';
export { Watch } from './lib/watch.js';
export {
	KeywardError, AgentError, NotFound, Denied, Expired, Unavailable, BadRequest, RateLimited, InternalError,
	ProtocolError, ClientClosed,
} from './lib/errors.js';
export { attach, AttachError, PLACEHOLDER } from './lib/ccxt.js';
export * as wire from './lib/wire.js';
