// Error lines quote the value they refuse, but a value can be megabytes (a 1 MB cwd, a
// 100,000-entry array): quote at most QUOTE_MAX bytes of it and say how long it was.

export const QUOTE_MAX = 200;

/** JSON text of `v`, cut to about QUOTE_MAX bytes with its full length noted. */
export function quoteValue(v: unknown): string {
  let text: string;
  try {
    text = JSON.stringify(v) ?? String(v);
  } catch {
    text = String(v);
  }
  const bytes = Buffer.byteLength(text);
  if (bytes <= QUOTE_MAX) return text;
  // cut on a character boundary: decoding a byte slice may end in U+FFFD, which is dropped
  const cut = Buffer.from(text).subarray(0, QUOTE_MAX).toString('utf8').replace(/\uFFFD$/, '');
  return `${cut}… (${bytes} bytes)`;
}
