// How the console writes numbers, times and the usage outcomes.

const numbers = new Intl.NumberFormat("en");

export function count(value) {
  return numbers.format(value ?? 0);
}

// A count with its noun: `1 gateway`, `3 gateways`.
export function countOf(value, one, many) {
  return `${count(value)} ${value === 1 ? one : many}`;
}

// `2026-03-01T12:00:00Z` as `2026-03-01 12:00 UTC`.
export function time(text) {
  if (!text) {
    return "never";
  }
  return `${text.slice(0, 10)} ${text.slice(11, 16)} UTC`;
}

// The outcomes the gateways count, in the order charts stack them, with their names.
export const OUTCOMES = [
  ["2xx", "2xx from the backend"],
  ["3xx", "3xx from the backend"],
  ["4xx", "4xx from the backend"],
  ["5xx", "5xx from the backend"],
  ["other", "other"],
  ["unauthenticated", "401/403 at the gateway: no valid key"],
  ["policy_denied", "403 at the gateway: key policy"],
  ["rate_limited", "429 rate limit"],
  ["quota_exceeded", "429 quota"],
];

export function outcomeName(outcome) {
  const found = OUTCOMES.find(([code]) => code === outcome);
  return found ? found[1] : outcome;
}

export function rateLimit(limit) {
  if (!limit) {
    return "none";
  }
  const own = limit.per_key === undefined ? "" : limit.per_key ? " (its own)" : " (its organization's)";
  return `${count(limit.requests_per_minute)} requests/minute, burst ${count(limit.burst)}${own}`;
}
