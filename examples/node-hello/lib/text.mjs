export const shout = (text) => `${text}!`;
