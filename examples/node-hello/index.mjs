// A greeting function: returns a message for the `name` in the event.
import { shout } from "./lib/text.mjs";

export const handler = async (event) => {
  const name = event?.name ?? "world";
  return { message: shout(`Hello, ${name}`), runtime: process.version };
};
