// A no-op handler: returns a constant, so a benchmark measures the platform alone.
export const handler = async (event, context) => ({ ok: true });
