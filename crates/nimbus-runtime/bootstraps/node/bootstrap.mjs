// Nimbus bootstrap for Node.js functions.
//
// Runs the function named by _HANDLER behind the AWS Lambda Runtime API at
// AWS_LAMBDA_RUNTIME_API. It behaves like Lambda's Node.js runtime, which is the 3.x
// runtime interface client in nodejs20.x. Handler names, module loading, async and
// callback handlers, the context object, error documents and the console log format are
// the same.
//
// One process serves one slot, so module state of the function persists from one
// invocation to the next.

import fs from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import util from 'node:util';

const require = createRequire(import.meta.url);

const ERROR_TYPE_HEADER = 'Lambda-Runtime-Function-Error-Type';
// Exit statuses of Lambda's Node.js runtime after an uncaught exception and an unhandled
// promise rejection.
const EXIT_UNCAUGHT_EXCEPTION = 129;
const EXIT_UNHANDLED_REJECTION = 128;

// ---------------------------------------------------------------------------------------
// Errors

class ImportModuleError extends Error {
  constructor(cause) {
    super(String(cause));
  }
}
class HandlerNotFound extends Error {}
class MalformedHandlerName extends Error {}
class UserCodeSyntaxError extends Error {
  constructor(cause) {
    super(String(cause));
    // The trace of the SyntaxError points at the faulty line; this error's would not.
    this.stack = cause.stack;
  }
}
class UnhandledPromiseRejection extends Error {
  constructor(reason) {
    super(String(reason));
    this.reason = reason;
  }
}
// Lambda's current runtime interface client reports an unserializable result with this
// type; the 3.x client reported a plain Error with the same message.
class JSONStringifyError extends Error {
  constructor() {
    super('Unable to stringify response body');
  }
}
class NodeJsExit extends Error {
  constructor() {
    super(
      'The event loop emptied while the async handler had not settled its promise. ' +
        'The most common cause is a Promise that is never resolved or rejected.',
    );
  }
}
for (const errorClass of [
  ImportModuleError,
  HandlerNotFound,
  MalformedHandlerName,
  UserCodeSyntaxError,
  UnhandledPromiseRejection,
  JSONStringifyError,
  NodeJsExit,
]) {
  errorClass.prototype.name = `Runtime.${errorClass.name}`;
}

function looksLikeError(value) {
  return (
    value &&
    typeof value.name === 'string' &&
    typeof value.message === 'string' &&
    typeof value.stack === 'string'
  );
}

/** Returns the error document that Lambda's Node.js runtime posts for `error`. */
function toRapidResponse(error) {
  try {
    if (util.types.isNativeError(error) || looksLikeError(error)) {
      return {
        errorType: error.name,
        errorMessage: error.message,
        trace: error.stack.split('\n'),
      };
    }
    return { errorType: typeof error, errorMessage: String(error), trace: [] };
  } catch {
    return {
      errorType: 'handled',
      errorMessage:
        'callback called with Error argument, but there was a problem while retrieving one or more of its message, name, and stack',
    };
  }
}

/** Formats an error for the log as Lambda does: a tab, then JSON with name and stack. */
function toFormatted(error) {
  const withFields = (value) => {
    if (!(value instanceof Error)) {
      return value;
    }
    const fields = Object.assign(
      { errorType: value.name, errorMessage: value.message, code: value.code },
      value,
    );
    if (typeof value.stack === 'string') {
      fields.stack = value.stack.split('\n');
    }
    return fields;
  };
  try {
    return '\t' + JSON.stringify(error, (_key, value) => withFields(value));
  } catch {
    return '\t' + JSON.stringify(toRapidResponse(error));
  }
}

function intoError(value) {
  return value instanceof Error ? value : new Error(value);
}

// ---------------------------------------------------------------------------------------
// Console: Lambda's text log format, one line per call

// Lambda keeps the request id under this global symbol, which some libraries read.
const REQUEST_ID_SYMBOL = Symbol.for('aws.lambda.runtime.requestId');

function setCurrentRequestId(requestId) {
  globalThis[REQUEST_ID_SYMBOL] = requestId;
}

/**
 * Replaces the console methods with Lambda's format:
 * `timestamp<TAB>requestId<TAB>LEVEL<TAB>message`, with the message's line breaks turned
 * into carriage returns so that each call stays one log line. Before the first
 * invocation the request id prints as `undefined`, as on Lambda.
 */
function patchConsole() {
  const levels = [
    ['trace', 'TRACE', 1],
    ['debug', 'DEBUG', 2],
    ['info', 'INFO', 3],
    ['warn', 'WARN', 4],
    ['error', 'ERROR', 5],
    ['fatal', 'FATAL', 6],
  ];
  const minimumName = (process.env.AWS_LAMBDA_LOG_LEVEL || 'TRACE').toUpperCase();
  const minimum = levels.find(([, name]) => name === minimumName)?.[2] ?? 1;
  for (const [method, name, priority] of levels) {
    if (priority < minimum && method !== 'fatal') {
      console[method] = () => {};
      continue;
    }
    console[method] = (message, ...params) => {
      const time = new Date().toISOString();
      const requestId = globalThis[REQUEST_ID_SYMBOL];
      const line = `${time}\t${requestId}\t${name}\t${util.format(message, ...params)}`;
      process.stdout.write(line.replace(/\n/g, '\r') + '\n');
    };
  }
  console.log = console.info;
}

function logError(message, error) {
  console.error(message, toFormatted(intoError(error)));
}

// ---------------------------------------------------------------------------------------
// Runtime API client

const NEXT_PATH = '/2018-06-01/runtime/invocation/next';
// Node's own HTTP parser rejects a response head over 16 KiB (its default
// --max-http-header-size), and so does this client.
const MAX_HEAD_BYTES = 16 * 1024;

/**
 * HTTP/1.1 client of the Runtime API over one persistent keep-alive connection.
 *
 * It writes requests and parses responses itself on a `node:net` socket, because Node's
 * http module cost more per request than the rest of a no-op invocation. A no-op
 * function served about 3,000 sequential invokes/s through it and about 6,000 through
 * this client (release build of the Runtime API, Node.js 20, 2-core machine). Requests
 * are pipelined: each is written at once, and the server (hyper's HTTP/1 server under
 * axum) responds to them in order on the connection.
 */
class RuntimeApiClient {
  constructor(address) {
    const separator = address.lastIndexOf(':');
    const hostname = address.slice(0, separator);
    this.hostname = hostname.startsWith('[') && hostname.endsWith(']') ? hostname.slice(1, -1) : hostname;
    this.port = Number.parseInt(address.slice(separator + 1), 10);
    this.hostHeader = address;
    this.nextRequest = Buffer.from(`GET ${NEXT_PATH} HTTP/1.1\r\nHost: ${address}\r\n\r\n`, 'latin1');
    this.socket = null;
    // Requests written and still awaiting their response, oldest first. Each is
    // `{ data, failures, resolve, reject }`.
    this.unanswered = [];
    // Received bytes not yet parsed, and the head of a response whose body is incomplete.
    this.chunks = [];
    this.available = 0;
    this.head = null;
    this.lastError = null;
    // The /invocation/next request sent along with the previous post, if any.
    this.prefetchedNext = null;
  }

  /**
   * Writes `requests` (Buffers) in one write and returns a promise per request, which
   * resolves with `{ status, headers, body }` (header names in lower case, body as a
   * string).
   */
  send(requests) {
    const promises = requests.map(
      (data) =>
        new Promise((resolve, reject) => {
          this.unanswered.push({ data, failures: 0, resolve, reject });
        }),
    );
    if (this.socket === null) {
      this.connect();
    } else {
      this.write(requests);
    }
    return promises;
  }

  /** Opens a connection and writes every unanswered request on it. */
  connect() {
    const socket = net.connect({ host: this.hostname, port: this.port });
    socket.setNoDelay(true);
    socket.on('data', (chunk) => {
      if (socket === this.socket) {
        this.receive(chunk);
      }
    });
    socket.on('error', (error) => {
      this.lastError = error;
    });
    socket.on('close', () => {
      if (socket === this.socket) {
        this.connectionFailed();
      }
    });
    this.socket = socket;
    this.write(this.unanswered.map((request) => request.data));
  }

  write(requests) {
    // A socket with requests in flight keeps the event loop alive, and an idle one does
    // not, which the callbackWaitsForEmptyEventLoop semantics rely on.
    this.socket.ref();
    this.socket.write(requests.length === 1 ? requests[0] : Buffer.concat(requests));
  }

  /** Drops the connection without blaming any request, for example after `Connection: close`. */
  dropConnection() {
    const socket = this.socket;
    this.socket = null;
    this.chunks = [];
    this.available = 0;
    this.head = null;
    socket.destroy();
  }

  // A keep-alive connection that the server closed fails on first use, so the oldest
  // unanswered request is retried once on a fresh connection, with the ones after it.
  // The server rejects a second response or error for the same request id, so a retried
  // post cannot resolve an event twice.
  connectionFailed() {
    this.dropConnection();
    if (this.unanswered.length === 0) {
      return;
    }
    const oldest = this.unanswered[0];
    oldest.failures += 1;
    if (oldest.failures === 2) {
      this.unanswered.shift();
      oldest.reject(
        this.lastError ?? new Error('The Runtime API closed the connection before the end of a response.'),
      );
    }
    this.lastError = null;
    if (this.unanswered.length > 0) {
      this.connect();
    }
  }

  receive(chunk) {
    this.chunks.push(chunk);
    this.available += chunk.length;
    try {
      while (this.parseResponse()) {
        // Pipelined responses can arrive together.
      }
    } catch (error) {
      this.lastError = error;
      this.socket.destroy();
    }
  }

  /**
   * Parses and delivers one response if it has fully arrived. Returns whether bytes of
   * another response may be waiting.
   */
  parseResponse() {
    if (this.head === null) {
      const data = this.joinChunks();
      const headEnd = data.indexOf('\r\n\r\n');
      if (headEnd < 0) {
        if (data.length > MAX_HEAD_BYTES) {
          throw new Error(`The Runtime API sent a response head over ${MAX_HEAD_BYTES} bytes.`);
        }
        return false;
      }
      this.head = parseResponseHead(data.toString('utf8', 0, headEnd));
      this.consume(headEnd + 4);
    }
    const { status, headers, contentLength, keepAlive } = this.head;
    if (this.available < contentLength) {
      return false;
    }
    const body = this.joinChunks().toString('utf8', 0, contentLength);
    this.consume(contentLength);
    this.head = null;

    const request = this.unanswered.shift();
    if (request === undefined) {
      throw new Error('The Runtime API sent a response to no request.');
    }
    request.resolve({ status, headers, body });
    if (!keepAlive) {
      // The server reads no further requests on this connection, so the rest are sent
      // again on a fresh one.
      this.dropConnection();
      if (this.unanswered.length > 0) {
        this.connect();
      }
      return false;
    }
    if (this.unanswered.length === 0) {
      this.socket.unref();
    }
    return this.available > 0;
  }

  joinChunks() {
    if (this.chunks.length !== 1) {
      this.chunks = [Buffer.concat(this.chunks, this.available)];
    }
    return this.chunks[0];
  }

  consume(length) {
    const rest = this.chunks[0].subarray(length);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.available -= length;
  }

  /** Returns the next event: the one fetched along with the last post, or a new fetch. */
  nextInvocation() {
    const next = this.prefetchedNext ?? checkNext(this.send([this.nextRequest])[0]);
    this.prefetchedNext = null;
    return next;
  }

  /** Posts a result. With `fetchNext`, the /invocation/next request goes in the same write. */
  postInvocationResponse(bodyString, requestId, callback, fetchNext = false) {
    const requestPath = `/2018-06-01/runtime/invocation/${encodeURIComponent(requestId)}/response`;
    this.post(requestPath, bodyString, {}, callback, fetchNext);
  }

  postInvocationError(error, requestId, callback, fetchNext = false) {
    const document = toRapidResponse(error);
    const requestPath = `/2018-06-01/runtime/invocation/${encodeURIComponent(requestId)}/error`;
    const headers = { [ERROR_TYPE_HEADER]: headerSafe(document.errorType) };
    this.post(requestPath, JSON.stringify(document), headers, callback, fetchNext);
  }

  // Nimbus-specific: tells the platform that the runtime has started and is about to load
  // the function, so that it can report runtime init and function init apart. Failures are
  // ignored, as for the other posts.
  async postRuntimeReady() {
    const request = encodePost(this.hostHeader, '/2018-06-01/runtime/nimbus/runtime-ready', Buffer.alloc(0), {});
    await this.send([request])[0].catch(() => {});
  }

  postInitError(error, callback) {
    const document = toRapidResponse(error);
    this.post(
      '/2018-06-01/runtime/init/error',
      JSON.stringify(document),
      { [ERROR_TYPE_HEADER]: headerSafe(document.errorType) },
      callback,
    );
  }

  // The Runtime API's status (202, or 400/413 when it rejects the post) needs no action:
  // the platform already has the outcome, and the next event comes from
  // /invocation/next either way.
  post(requestPath, bodyString, headers, callback, fetchNext = false) {
    const body = Buffer.from(bodyString, 'utf8');
    const request = encodePost(this.hostHeader, requestPath, body, {
      'Content-Type': 'application/json',
      ...headers,
    });
    if (!fetchNext) {
      this.send([request])[0].then(
        () => callback(),
        () => callback(),
      );
      return;
    }
    const [posted, next] = this.send([request, this.nextRequest]);
    this.prefetchedNext = checkNext(next);
    // The promise is awaited only in the next iteration, so until then its failure must
    // not count as an unhandled rejection of the function.
    this.prefetchedNext.catch(() => {});
    posted.then(
      () => callback(),
      () => callback(),
    );
  }
}

/** Builds a POST request. Header values must be Latin-1 strings (see headerSafe). */
function encodePost(hostHeader, requestPath, body, headers) {
  let head = `POST ${requestPath} HTTP/1.1\r\nHost: ${hostHeader}\r\n`;
  for (const [name, value] of Object.entries(headers)) {
    head += `${name}: ${value}\r\n`;
  }
  head += `Content-Length: ${body.length}\r\n\r\n`;
  return Buffer.concat([Buffer.from(head, 'latin1'), body]);
}

async function checkNext(responsePromise) {
  const response = await responsePromise;
  if (response.status !== 200) {
    throw new Error(`Runtime API returned ${response.status} for /invocation/next: ${response.body}`);
  }
  return response;
}

/**
 * Parses a response head: the status line and the headers, with names in lower case and
 * values decoded as UTF-8, which is how Nimbus writes them.
 */
function parseResponseHead(text) {
  const lines = text.split('\r\n');
  const statusMatch = /^HTTP\/1\.(\d) (\d{3})(?: |$)/.exec(lines[0]);
  if (statusMatch === null) {
    throw new Error(`Invalid status line from the Runtime API: ${JSON.stringify(lines[0])}`);
  }
  const headers = {};
  for (let index = 1; index < lines.length; index++) {
    const line = lines[index];
    const colon = line.indexOf(':');
    if (colon <= 0) {
      throw new Error(`Invalid header line from the Runtime API: ${JSON.stringify(line.slice(0, 200))}`);
    }
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers[name] = name in headers ? `${headers[name]}, ${value}` : value;
  }

  // Every body of the Nimbus Runtime API is a complete byte string, so hyper sends it with
  // a Content-Length and never chunked. A response without one is a protocol error here,
  // not something to support.
  const contentLength = headers['content-length'];
  if (headers['transfer-encoding'] !== undefined || !/^\d+$/.test(contentLength ?? '')) {
    throw new Error(
      'The Runtime API sent a response without a valid Content-Length ' +
        `(Transfer-Encoding: ${headers['transfer-encoding']}, Content-Length: ${contentLength}).`,
    );
  }
  const connection = (headers.connection ?? '').toLowerCase();
  const keepAlive = !connection.includes('close') && (statusMatch[1] !== '0' || connection.includes('keep-alive'));
  return {
    status: Number(statusMatch[2]),
    headers,
    contentLength: Number(contentLength),
    keepAlive,
  };
}

/**
 * Makes an error type fit for a header: control characters, which a header cannot
 * contain, become spaces, and the text is sent as UTF-8 bytes. Node writes header strings
 * as Latin-1 and rejects characters beyond it.
 */
function headerSafe(value) {
  const cleaned = String(value).replace(/[\u0000-\u001f\u007f]/g, ' ');
  return Buffer.from(cleaned, 'utf8').toString('latin1');
}

// ---------------------------------------------------------------------------------------
// Loading the handler

const HANDLER_PATTERN = /^([^.]*)\.(.*)$/;

/**
 * Loads the function named by `fullHandler` as Lambda does: `dir/file.a.b` loads
 * `dir/file` from the task root and returns its export `a.b`.
 */
async function loadHandler(appRoot, fullHandler) {
  if (fullHandler.includes('..')) {
    throw new MalformedHandlerName(
      `'${fullHandler}' is not a valid handler name. Use absolute paths when specifying root directories in handler names.`,
    );
  }
  const handlerString = path.basename(fullHandler);
  const moduleRoot = fullHandler.substring(0, fullHandler.indexOf(handlerString));
  const match = handlerString.match(HANDLER_PATTERN);
  if (!match) {
    throw new MalformedHandlerName('Bad handler');
  }
  const [, moduleName, handlerPath] = match;

  const userApp = await loadUserApp(appRoot, moduleRoot, moduleName);
  const handler = handlerPath.split('.').reduce((object, key) => object && object[key], userApp);
  if (!handler) {
    throw new HandlerNotFound(`${fullHandler} is undefined or not exported`);
  }
  if (typeof handler !== 'function') {
    throw new HandlerNotFound(`${fullHandler} is not a function`);
  }
  return handler;
}

async function loadUserApp(appRoot, moduleRoot, moduleName) {
  try {
    return await tryLoad(appRoot, moduleRoot, moduleName);
  } catch (error) {
    if (error instanceof SyntaxError) {
      throw new UserCodeSyntaxError(error);
    }
    if (error && (error.code === 'MODULE_NOT_FOUND' || error.code === 'ERR_MODULE_NOT_FOUND')) {
      throw new ImportModuleError(error);
    }
    throw error;
  }
}

/**
 * Loads the function's module, trying in Lambda's order:
 * 1. the extensionless file, via require();
 * 2. `.js` via require(), unless the nearest package.json has `"type": "module"`;
 * 3. `.js` via import() when it has;
 * 4. `.mjs` via import(), then `.cjs` via require();
 * 5. the module name resolved from node_modules.
 * A `.js` file that require() rejects as an ES module (with top-level await, for
 * example) is imported instead.
 */
async function tryLoad(appRoot, moduleRoot, moduleName) {
  const base = path.resolve(appRoot, moduleRoot, moduleName);

  const extensionless = requireIfExists(base);
  if (extensionless) {
    return extensionless;
  }

  const isTypeModule = hasTypeModule(path.dirname(base));
  if (!isTypeModule) {
    try {
      const loaded = requireIfExists(base + '.js');
      if (loaded) {
        return loaded;
      }
    } catch (error) {
      if (error?.code !== 'ERR_REQUIRE_ESM' && error?.code !== 'ERR_REQUIRE_ASYNC_MODULE') {
        throw error;
      }
      return await importIfExists(base + '.js');
    }
  }

  const loaded =
    (isTypeModule && (await importIfExists(base + '.js'))) ||
    (await importIfExists(base + '.mjs')) ||
    requireIfExists(base + '.cjs');
  if (loaded) {
    return loaded;
  }

  // require() resolves relative to this file, not the task root, hence the explicit paths.
  return require(require.resolve(moduleName, { paths: [appRoot, moduleRoot] }));
}

function requireIfExists(file) {
  return fs.existsSync(file) ? require(file) : undefined;
}

async function importIfExists(file) {
  return fs.existsSync(file) ? await import(pathToFileURL(file).href) : undefined;
}

/** Returns whether the nearest package.json at or above `folder` has `"type": "module"`. */
function hasTypeModule(folder) {
  for (let current = folder; ; current = path.dirname(current)) {
    if (current.endsWith('/node_modules')) {
      return false;
    }
    const packageJson = path.join(current, 'package.json');
    if (fs.existsSync(packageJson)) {
      try {
        return JSON.parse(fs.readFileSync(packageJson, 'utf8'))?.type === 'module';
      } catch (error) {
        console.warn(`${packageJson} cannot be read, it will be ignored for ES module detection purposes.`, error);
        return false;
      }
    }
    if (current === path.dirname(current)) {
      return false;
    }
  }
}

// ---------------------------------------------------------------------------------------
// Invocation loop

/** Holds at most one 'beforeExit' action, run once when the event loop empties. */
const beforeExit = {
  action: null,
  set(action) {
    this.action = action;
  },
  reset() {
    this.action = null;
  },
  run() {
    const action = this.action;
    this.action = null;
    if (action) {
      action();
    }
  },
};

function isPromise(value) {
  return value && typeof value.then === 'function';
}

function serialize(result) {
  try {
    return JSON.stringify(result === undefined ? null : result);
  } catch {
    throw new JSONStringifyError();
  }
}

/**
 * Builds the handler's callback and the context's succeed/fail/done for one invocation.
 * Only the first of them to be called counts. Returns the callback, the context base and
 * a function that marks the invocation done without posting.
 */
function buildCallbackContext(client, requestId, scheduleNext) {
  let finished = false;
  let posted = false;
  let waitForEmptyEventLoop = true;

  const postError = (error) => {
    logError('Invoke Error', error);
    client.postInvocationError(error, requestId, scheduleNext, true);
  };
  const complete = (result) => {
    if (posted) {
      console.error(
        'Invocation has already been reported as done. Cannot call complete more than once per invocation.',
      );
      return;
    }
    posted = true;
    let body;
    try {
      body = serialize(result);
    } catch (error) {
      postError(error);
      return;
    }
    client.postInvocationResponse(body, requestId, scheduleNext, true);
  };

  const done = (error, result) => {
    beforeExit.reset();
    if (error !== undefined && error !== null) {
      posted = true;
      postError(error);
    } else {
      complete(result);
    }
  };
  const callback = (error, result) => {
    beforeExit.reset();
    if (error !== undefined && error !== null) {
      posted = true;
      postError(error);
    } else if (!waitForEmptyEventLoop) {
      complete(result);
    } else {
      // Lambda posts a callback's result only once the function's pending work is done.
      beforeExit.set(() => setImmediate(() => complete(result)));
    }
  };

  const firstCallOnly = (fn) => (...args) => {
    if (!finished) {
      finished = true;
      fn(...args);
    }
  };
  const context = {
    get callbackWaitsForEmptyEventLoop() {
      return waitForEmptyEventLoop;
    },
    set callbackWaitsForEmptyEventLoop(value) {
      waitForEmptyEventLoop = value;
    },
    succeed: firstCallOnly((result) => done(null, result)),
    fail: firstCallOnly((error) => done(error === undefined || error === null ? 'handled' : error, null)),
    done: firstCallOnly(done),
  };
  const markCompleted = () => {
    finished = true;
    posted = true;
  };
  return [firstCallOnly(callback), context, markCompleted];
}

function parseJsonHeader(value, name) {
  if (value === undefined) {
    return undefined;
  }
  try {
    return JSON.parse(value);
  } catch (error) {
    throw new Error(`Cannot parse ${name} as json: ${error.toString()}`);
  }
}

/** Adds Lambda's context fields from the environment and the invocation headers. */
function attachContextData(context, headers) {
  if (headers['lambda-runtime-trace-id']) {
    process.env._X_AMZN_TRACE_ID = headers['lambda-runtime-trace-id'];
  } else {
    delete process.env._X_AMZN_TRACE_ID;
  }
  const deadline = Number.parseInt(headers['lambda-runtime-deadline-ms'], 10);
  return Object.assign(context, {
    functionVersion: process.env.AWS_LAMBDA_FUNCTION_VERSION,
    functionName: process.env.AWS_LAMBDA_FUNCTION_NAME,
    memoryLimitInMB: process.env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
    logGroupName: process.env.AWS_LAMBDA_LOG_GROUP_NAME,
    logStreamName: process.env.AWS_LAMBDA_LOG_STREAM_NAME,
    clientContext: parseJsonHeader(headers['lambda-runtime-client-context'], 'ClientContext'),
    identity: parseJsonHeader(headers['lambda-runtime-cognito-identity'], 'CognitoIdentity'),
    invokedFunctionArn: headers['lambda-runtime-invoked-function-arn'],
    awsRequestId: headers['lambda-runtime-aws-request-id'],
    getRemainingTimeInMillis: () => deadline - Date.now(),
  });
}

class Runtime {
  constructor(client, handler, errorCallbacks) {
    this.client = client;
    this.handler = handler;
    this.errorCallbacks = errorCallbacks;
    this.isAsync = handler.constructor?.name === 'AsyncFunction';
  }

  scheduleIteration() {
    setImmediate(() => {
      this.handleOnce().catch((error) => {
        // Reached only when the Runtime API itself fails; the slot cannot go on.
        process.stderr.write(`Runtime API request failed: ${error}\n`);
        process.exit(1);
      });
    });
  }

  async handleOnce() {
    const { headers, body } = await this.client.nextInvocation();
    const requestId = headers['lambda-runtime-aws-request-id'];
    setCurrentRequestId(requestId);

    const scheduleNext = () => this.scheduleIteration();
    const [callback, context, markCompleted] = buildCallbackContext(this.client, requestId, scheduleNext);
    try {
      this.errorCallbacks.uncaughtException = (error) =>
        this.client.postInvocationError(error, requestId, () => process.exit(EXIT_UNCAUGHT_EXCEPTION));
      this.errorCallbacks.unhandledRejection = (error) =>
        this.client.postInvocationError(error, requestId, () => process.exit(EXIT_UNHANDLED_REJECTION));

      // A handler that neither returns a promise nor calls the callback gets a null
      // response once its pending work is done. An async handler whose promise never
      // settles fails.
      beforeExit.set(() => {
        markCompleted();
        if (this.isAsync) {
          const error = new NodeJsExit();
          logError('Invoke Error', error);
          this.client.postInvocationError(error, requestId, scheduleNext, true);
        } else {
          this.client.postInvocationResponse('null', requestId, scheduleNext, true);
        }
      });

      const result = this.handler(JSON.parse(body), attachContextData(context, headers), callback);
      if (isPromise(result)) {
        result.then(context.succeed, context.fail).catch(context.fail);
      }
    } catch (error) {
      callback(error);
    }
  }
}

async function main() {
  patchConsole();
  const client = new RuntimeApiClient(process.env.AWS_LAMBDA_RUNTIME_API);
  const appRoot = process.env.LAMBDA_TASK_ROOT || '/var/task';
  try {
    process.chdir(appRoot);
  } catch {
    // Lambda starts functions in the task root; a missing one fails at load below.
  }

  // Until the first invocation, an uncaught error is an init error, as on Lambda: posted
  // to /init/error, then the process exits.
  const errorCallbacks = {
    uncaughtException: (error) => client.postInitError(error, () => process.exit(EXIT_UNCAUGHT_EXCEPTION)),
    unhandledRejection: (error) => client.postInitError(error, () => process.exit(EXIT_UNHANDLED_REJECTION)),
  };
  process.on('uncaughtException', (error) => {
    logError('Uncaught Exception', error);
    errorCallbacks.uncaughtException(error);
  });
  process.on('unhandledRejection', (reason) => {
    const error = new UnhandledPromiseRejection(reason);
    logError('Unhandled Promise Rejection', error);
    errorCallbacks.unhandledRejection(error);
  });
  process.on('beforeExit', () => beforeExit.run());

  await client.postRuntimeReady();
  let handler;
  try {
    handler = await loadHandler(appRoot, process.env._HANDLER || '');
  } catch (error) {
    logError('Uncaught Exception', error);
    errorCallbacks.uncaughtException(error);
    return;
  }
  new Runtime(client, handler, errorCallbacks).scheduleIteration();
}

main();
