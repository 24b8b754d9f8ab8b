import * as assert from 'node:assert/strict'

import { createFailureLog, type FailureLine, type FailureLog } from '../../lib/failure-log'

interface Timer {
  readonly at: number
  readonly fn: () => void
}

interface Harness {
  readonly log: FailureLog
  readonly lines: string[]
  /** One failure with `text`; true when it was logged in full. */
  fail(text?: string): boolean
  /** Moves the clock on by `ms`, running every timer it passes. */
  advance(ms: number): void
  /** How many timers are pending. */
  timers(): number
}

/** A FailureLog on an injected clock whose timers run when the clock passes them. */
function harness(windowMs = 60_000): Harness {
  let t = 1_000_000
  let timers: Timer[] = []
  const lines: string[] = []
  const log = createFailureLog({
    what: 'store unavailable',
    windowMs,
    now: () => t,
    schedule: (fn, ms) => {
      timers.push({ at: t + ms, fn })
    },
  })
  return {
    log,
    lines,
    fail: (text = 'ECONNREFUSED') => log.failure(text, (line) => lines.push(line)),
    advance(ms) {
      t += ms
      for (;;) {
        const due = timers.filter((x) => x.at <= t)
        if (due.length === 0) break
        timers = timers.filter((x) => x.at > t)
        for (const x of due) x.fn()
      }
    },
    timers: () => timers.length,
  }
}

describe('failure-log: rate-limited store-unavailable lines', function () {
  it('logs the first failure in full and counts the next 1233 without logging them', function () {
    const h = harness()
    assert.equal(h.fail('redis down'), true)
    for (let i = 0; i < 1233; i++) assert.equal(h.fail(), false)
    assert.deepEqual(h.lines, ['redis down'])
    assert.equal(h.log.suppressed, 1233)
  })

  it('one summary line per minute with the count, on the timer even when failures stop', function () {
    const h = harness()
    h.fail('first')
    for (let i = 0; i < 10; i++) h.fail('again')
    h.advance(59_999)
    assert.equal(h.lines.length, 1, 'nothing before the minute is over')
    h.advance(1)
    assert.deepEqual(h.lines, ['first', 'store unavailable: 10 more failures in the last 60 s (last: again)'])
    h.fail('third')
    h.advance(60_000)
    assert.equal(h.lines[2], 'store unavailable: 1 more failure in the last 60 s (last: third)')
    assert.equal(h.lines.length, 3)
  })

  it('a minute without failures ends the outage: the next failure is logged in full again, and no timer is left', function () {
    const h = harness()
    h.fail('a')
    h.advance(60_000)
    assert.deepEqual(h.lines, ['a'])
    assert.equal(h.timers(), 0)
    assert.equal(h.fail('b'), true)
    assert.deepEqual(h.lines, ['a', 'b'])
  })

  it('a late timer: the next failure after the window closes it first', function () {
    let t = 0
    const lines: string[] = []
    const log = createFailureLog({ what: 'store unavailable', now: () => t, schedule: () => undefined })
    const line: FailureLine = (l) => {
      lines.push(l)
    }
    log.failure('x', line)
    log.failure('y', line)
    t = 61_000
    assert.equal(log.failure('z', line), false)
    assert.deepEqual(lines, ['x', 'store unavailable: 1 more failure in the last 61 s (last: z)'])
    assert.equal(log.suppressed, 1)
  })

  it('50 failures a second for ten minutes give at most 11 lines', function () {
    const h = harness()
    for (let s = 0; s < 600; s++) {
      for (let i = 0; i < 50; i++) h.fail()
      h.advance(1000)
    }
    assert.ok(h.lines.length <= 11, `${h.lines.length} lines`)
    assert.equal(h.lines.length, 11)
  })
})
