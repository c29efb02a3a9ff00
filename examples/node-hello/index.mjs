// An async handler: waits for a timer, then greets the `name` in the event.
import { setTimeout as sleep } from "node:timers/promises";
import { shout } from "./lib/text.mjs";

export const handler = async (event, context) => {
  await sleep(5);
  const name = event?.name ?? "world";
  return {
    message: shout(`Hello, ${name}`),
    runtime: process.version,
    remaining_ms: context.getRemainingTimeInMillis(),
  };
};
