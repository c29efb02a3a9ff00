// Re-exports the no-op Node.js handler, because Serverless resolves handler paths
// inside the service directory.
export { handler } from "../../functions/noop-node/index.mjs";
