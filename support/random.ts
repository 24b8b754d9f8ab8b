// Deterministic pseudo-random numbers for tests that explore many cases: the same seed gives the
// same cases on every run, so a failure can be replayed.

/** A generator of numbers in [0, 1) from `seed` (mulberry32). */
export function random(seed: number): () => number {
  let a = seed
  return () => {
    a = (a + 0x6d2b79f5) | 0
    let t = Math.imul(a ^ (a >>> 15), 1 | a)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
