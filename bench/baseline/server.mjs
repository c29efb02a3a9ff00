// Serves the no-op Node.js handler over a minimal node:http server: the cost of
// Node.js and its HTTP stack alone, with no Lambda runtime. Every POST, on any
// path, awaits handler(event, {}) with the request body parsed as JSON (an empty
// body is null) and responds with the result as JSON. Connections are kept alive.
//
// Usage: node server.mjs PORT [INDEX_MJS]
//
// INDEX_MJS defaults to bench/functions/noop-node/index.mjs, found relative to
// this script. The server binds 127.0.0.1 and prints
// "listening on http://127.0.0.1:PORT" once it accepts connections.
import http from "node:http";
import path from "node:path";
import { pathToFileURL } from "node:url";

const defaultApp = new URL("../functions/noop-node/index.mjs", import.meta.url);

const [portArgument, appArgument] = process.argv.slice(2);
if (portArgument === undefined) {
  console.error("usage: node server.mjs PORT [INDEX_MJS]");
  process.exit(2);
}
const port = Number(portArgument);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`server.mjs: invalid port ${JSON.stringify(portArgument)}: expected an integer from 0 to 65535`);
  process.exit(2);
}
const appUrl = appArgument === undefined ? defaultApp : pathToFileURL(path.resolve(appArgument));
const { handler } = await import(appUrl.href);

function sendText(response, status, text) {
  response.writeHead(status, {
    "Content-Type": "text/plain; charset=utf-8",
    "Content-Length": Buffer.byteLength(text),
  });
  response.end(text);
}

async function serve(request, response) {
  if (request.method !== "POST") {
    console.error(`server.mjs: rejected ${request.method} ${request.url}: only POST is supported`);
    sendText(response, 405, "only POST is supported\n");
    return;
  }

  const chunks = [];
  for await (const chunk of request) chunks.push(chunk);
  const body = Buffer.concat(chunks);
  let event = null;
  if (body.length > 0) {
    try {
      event = JSON.parse(body);
    } catch (error) {
      console.error(`server.mjs: rejected POST ${request.url}: invalid JSON in the request body: ${error.message}`);
      sendText(response, 400, `invalid JSON in the request body: ${error.message}\n`);
      return;
    }
  }

  const payload = JSON.stringify(await handler(event, {}));
  response.writeHead(200, {
    "Content-Type": "application/json",
    "Content-Length": Buffer.byteLength(payload),
  });
  response.end(payload);
}

// node:http keeps HTTP/1.1 connections alive by default. noDelay sends small
// responses at once instead of holding them under Nagle's algorithm.
const server = http.createServer({ noDelay: true }, (request, response) => {
  serve(request, response).catch((error) => {
    console.error(`server.mjs: request ${request.method} ${request.url} failed:`, error);
    if (!response.headersSent) sendText(response, 500, "the handler failed\n");
    else response.destroy(error);
  });
});
// The default keepAliveTimeout of 5 s closes a connection that a benchmark client
// leaves idle between phases, so the next phase would pay for a new connection.
server.keepAliveTimeout = 60_000;
server.listen(port, "127.0.0.1", () => {
  const address = server.address();
  console.log(`listening on http://${address.address}:${address.port}`);
});
