// Errors of the keyward client. Every error the client throws is a
// KeywardError; an Error answer of the agent is an AgentError, with one
// subclass per error code of the protocol, so a program catches what it can
// handle:
//
//	try { await client.sign(...) } catch (e) { if (e instanceof Denied) ... }
//
// A code this client does not know (from a newer agent) is thrown as a
// plain AgentError. `message` is for people: branch on the class or `code`.

/** The base class of every error of this package. */
export class KeywardError extends Error {
	constructor(message) {
		super(message);
		this.name = new.target.name;
	}
}

const codeNames = ['', 'not_found', 'denied', 'expired', 'unavailable', 'bad_request', 'rate_limited', 'internal'];

/** The protocol's name of an error code, such as "not_found". */
export function codeName(code) {
	return codeNames[code] || `code ${code}`;
}

/** An error answer from the agent: `code` is the stable error code. */
export class AgentError extends KeywardError {
	constructor(message, code) {
		super(`agent: ${message} (${codeName(code ?? new.target.code)})`);
		this.code = code ?? new.target.code;
		this.agentMessage = message;
	}
}
AgentError.code = 0;

/** Code 1: the caller may read the name, but there is no such secret or version. */
export class NotFound extends AgentError {}
NotFound.code = 1;
/** Code 2: policy refuses the caller, or the secret does not exist and the caller has no rule for it. */
export class Denied extends AgentError {}
Denied.code = 2;
/** Code 3: the secret or version is past its expiry or its rotation's grace period. */
export class Expired extends AgentError {}
Expired.code = 3;
/** Code 4: the agent cannot serve now; also thrown when it cannot be reached. Retry with backoff. */
export class Unavailable extends AgentError {}
Unavailable.code = 4;
/** Code 5: the request is malformed, or the agent does not know it. */
export class BadRequest extends AgentError {}
BadRequest.code = 5;
/** Code 6: the caller sends too fast; retry with backoff. */
export class RateLimited extends AgentError {}
RateLimited.code = 6;
/** Code 7: the agent failed, or the secret is damaged at rest; an operator must act. */
export class InternalError extends AgentError {}
InternalError.code = 7;

/** The agent sent something this client does not understand, or the connection broke mid-answer. */
export class ProtocolError extends KeywardError {}

/** The client was used after close(). */
export class ClientClosed extends KeywardError {}

const byCode = new Map([NotFound, Denied, Expired, Unavailable, BadRequest, RateLimited, InternalError].map((c) => [c.code, c]));

/** The error for an Error answer. */
export function fromAnswer(code, message) {
	const Cls = byCode.get(code) ?? AgentError;
	return new Cls(message, code);
}
