// Starts Node.js, loads the no-op handler, calls it once and prints its JSON.
//
// This is the language's own cold start: what starting the function costs with no
// platform around it. The benchmarks compare a platform's cold start with it.
//
// Usage: node start.mjs [INDEX_MJS]
import path from "node:path";
import { pathToFileURL } from "node:url";

const defaultApp = new URL("../functions/noop-node/index.mjs", import.meta.url);
const appArgument = process.argv[2];
const appUrl = appArgument === undefined ? defaultApp : pathToFileURL(path.resolve(appArgument));
const { handler } = await import(appUrl.href);
console.log(JSON.stringify(await handler({}, {})));
