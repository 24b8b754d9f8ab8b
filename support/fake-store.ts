// fakeStore(): a complete Store for plugin and unit tests whose every member fails with
// "not stubbed" unless the test overrides it. The object literal is typed as Store, so when the
// interface grows the compiler points here until the new member is added.

import type { Store } from '../lib/store'

/** What fakeStore's unstubbed members reject (or throw) with. */
export class NotStubbedError extends Error {
  constructor(readonly member: string) {
    super(`fakeStore: ${member} is not stubbed`)
    this.name = 'NotStubbedError'
  }
}

const reject = (member: string) => (): Promise<never> => Promise.reject(new NotStubbedError(member))

function unstubbed(kind: Store['kind']): Store {
  return {
    kind,
    record: reject('record'),
    invalid: reject('invalid'),
    getDisabled: reject('getDisabled'),
    tokenAccount: reject('tokenAccount'),
    redeem: reject('redeem'),
    audit: reject('audit'),
    auditLog: reject('auditLog'),
    disable: reject('disable'),
    enable: reject('enable'),
    reset: reject('reset'),
    counts: reject('counts'),
    evidence: reject('evidence'),
    listDisabled: reject('listDisabled'),
    ready: reject('ready'),
    heldState: reject('heldState'),
    hold: reject('hold'),
    release: reject('release'),
    heldCount: reject('heldCount'),
    dropHeld: reject('dropHeld'),
    // Registering a listener is no store call: a fake simply never announces an enable.
    watchEnables: () => undefined,
    authFailure: reject('authFailure'),
    rememberPassword: reject('rememberPassword'),
    startProbation: reject('startProbation'),
    probationUntil: reject('probationUntil'),
    oldPasswords: reject('oldPasswords'),
    forgetPasswords: reject('forgetPasswords'),
    close: reject('close'),
  }
}

/**
 * A Store whose members are `overrides` and, for the rest, functions that reject with
 * NotStubbedError. `kind` defaults to 'memory'.
 */
export function fakeStore(overrides: Partial<Store> = {}): Store {
  return { ...unstubbed(overrides.kind ?? 'memory'), ...overrides }
}
