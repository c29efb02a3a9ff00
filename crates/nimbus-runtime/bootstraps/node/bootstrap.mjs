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
import http from 'node:http';
import { createRequire } from 'node:module';
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

class RuntimeApiClient {
  constructor(address) {
    const separator = address.lastIndexOf(':');
    this.hostname = address.slice(0, separator);
    this.port = Number.parseInt(address.slice(separator + 1), 10);
    // One persistent connection. An idle keep-alive socket does not keep the event loop
    // alive, which the callbackWaitsForEmptyEventLoop semantics rely on.
    this.agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  }

  /** Sends one request and resolves with `{ status, headers, body }` (body as a string). */
  request(method, requestPath, body, headers) {
    const attempt = () =>
      new Promise((resolve, reject) => {
        const request = http.request(
          {
            hostname: this.hostname,
            port: this.port,
            path: requestPath,
            method,
            headers,
            agent: this.agent,
          },
          (response) => {
            const chunks = [];
            response.on('data', (chunk) => chunks.push(chunk));
            response.on('end', () =>
              resolve({
                status: response.statusCode,
                headers: response.headers,
                body: Buffer.concat(chunks).toString('utf8'),
              }),
            );
            response.on('error', reject);
          },
        );
        request.on('error', reject);
        request.end(body);
      });
    // A keep-alive connection that the server closed fails on first use, so the request
    // is retried once on a fresh connection. The server rejects a second response or
    // error for the same request id, so a retried post cannot resolve an event twice.
    return attempt().catch(() => attempt());
  }

  async nextInvocation() {
    const response = await this.request('GET', '/2018-06-01/runtime/invocation/next');
    if (response.status !== 200) {
      throw new Error(
        `Runtime API returned ${response.status} for /invocation/next: ${response.body}`,
      );
    }
    return response;
  }

  postInvocationResponse(bodyString, requestId, callback) {
    const requestPath = `/2018-06-01/runtime/invocation/${encodeURIComponent(requestId)}/response`;
    this.post(requestPath, bodyString, {}, callback);
  }

  postInvocationError(error, requestId, callback) {
    const document = toRapidResponse(error);
    const requestPath = `/2018-06-01/runtime/invocation/${encodeURIComponent(requestId)}/error`;
    this.post(requestPath, JSON.stringify(document), { [ERROR_TYPE_HEADER]: headerSafe(document.errorType) }, callback);
  }

  // Nimbus-specific: tells the platform that the runtime has started and is about to load
  // the function, so that it can report runtime init and function init apart. Failures are
  // ignored, as for the other posts.
  async postRuntimeReady() {
    await this.request('POST', '/2018-06-01/runtime/nimbus/runtime-ready', Buffer.alloc(0), {
      'Content-Length': 0,
    }).catch(() => {});
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
  post(requestPath, bodyString, headers, callback) {
    const body = Buffer.from(bodyString, 'utf8');
    const allHeaders = {
      'Content-Type': 'application/json',
      'Content-Length': body.length,
      ...headers,
    };
    this.request('POST', requestPath, body, allHeaders).then(
      () => callback(),
      () => callback(),
    );
  }
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
    client.postInvocationError(error, requestId, scheduleNext);
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
    client.postInvocationResponse(body, requestId, scheduleNext);
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
          this.client.postInvocationError(error, requestId, scheduleNext);
        } else {
          this.client.postInvocationResponse('null', requestId, scheduleNext);
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
