// Issue 8's smaller leaks, at the store level, against both stores: reactivation tokens are
// kept only as their SHA-256 (never in clear in a Redis key or value, nor in the state file),
// a disabled account's record says who disabled it (for the SMTP text), and monitor mode's
// first report of an overrun carries the stored evidence.

import * as assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import * as fs from 'node:fs'
import * as path from 'node:path'

import { EVIDENCE_CAP, type RecordResult, type Store } from '../../lib/store'
import { createMemoryStore } from '../../lib/store/memory'
import { tmpDir } from '../../support/process'
import { startRedis, type RedisClient, type RedisServer } from '../../support/redis'
import { recordInput, rules, summary } from './contract'
import { openRedisStore, untilAnswers } from './redis-store'

const sha256 = (s: string): string => createHash('sha256').update(s).digest('hex')

/** Disables `account` by going over 1 message per hour; the second message carries `token`. */
async function trip(store: Store, account: string, token: string) {
  const r = rules({ messages: '1/1h' })
  assert.equal((await store.record(recordInput(account, r, { summary: summary(1) }))).status, 'ok')
  const res = await store.record({ ...recordInput(account, r, { summary: summary(2) }), token })
  assert.equal(res.status, 'refused')
  return res
}

/** A store opened for one test, and every byte it has written. */
interface SecretsStore {
  readonly store: Store
  dump(): Promise<string>
  cleanup(): Promise<void>
}

/** The tests every store passes. */
function secretsContract(name: string, open: () => Promise<SecretsStore>): void {
  describe(`${name} store: tokens, who disabled, monitor evidence`, function () {
    let s: SecretsStore
    beforeEach(async function () {
      s = await open()
    })
    afterEach(async function () {
      await s.cleanup()
    })

    it('keeps no reactivation token in clear, only its SHA-256, and still redeems the clear token once', async function () {
      const token = randomBytes(16).toString('hex')
      await trip(s.store, 'alice@example.com', token)
      await s.store.audit({
        at: Date.now(),
        account: 'alice@example.com',
        action: 'disable',
        actor: 'limit',
        how: 'limit',
      })
      const bytes = await s.dump()
      assert.ok(!bytes.includes(token), `the token appears in clear in the ${name} store`)
      assert.ok(bytes.includes(sha256(token)), 'its SHA-256 is kept')
      const shown = JSON.stringify([await s.store.getDisabled('alice@example.com'), await s.store.listDisabled()])
      assert.ok(!shown.includes(sha256(token)) && !/token_?sha/i.test(shown), `readers see no digest either: ${shown}`)
      assert.equal(await s.store.tokenAccount(token), 'alice@example.com')
      // the digest itself is not a token: whoever reads the store cannot use what they read
      assert.equal(await s.store.tokenAccount(sha256(token)), null)
      assert.equal(await s.store.redeem('alice@example.com', sha256(token)), 'mismatch')
      assert.equal(await s.store.redeem('alice@example.com', token), 'ok')
      assert.equal(await s.store.redeem('alice@example.com', token), 'not-disabled')
    })

    it("answers who disabled the account when it refuses a disabled account's message", async function () {
      const r = rules({ messages: '10/1h' })
      await s.store.disable({ account: 'bob', reason: 'stolen laptop', by: 'cli:root', incident: 'm1' })
      const manual = await s.store.record(recordInput('bob', r))
      assert.equal(manual.status, 'disabled')
      assert.deepEqual({ status: manual.status, by: manual.by }, { status: 'disabled', by: 'cli:root' })
      await trip(s.store, 'carol', randomBytes(16).toString('hex'))
      const limit = await s.store.record(recordInput('carol', r))
      assert.equal(limit.status, 'disabled')
      assert.deepEqual({ status: limit.status, by: limit.by }, { status: 'disabled', by: 'limit' })
    })

    it('hands monitor mode the stored evidence, newest first, on the report that flips the marker only', async function () {
      const r = rules({ messages: '3/1h' })
      const results: RecordResult[] = []
      for (let i = 1; i <= EVIDENCE_CAP + 2; i++) {
        results.push(await s.store.record(recordInput('dave', r, { mode: 'monitor', summary: summary(i) })))
      }
      const flips = results.filter((x) => x.flipped)
      assert.equal(flips.length, 1)
      const first = results.findIndex((x) => x.flipped)
      assert.equal(first, 3, 'the 4th message crossed 3/1h')
      const flip = flips[0]
      assert.equal(flip?.status, 'ok')
      assert.deepEqual(
        flip.evidence?.map((e) => e.subject),
        ['subject 4', 'subject 3', 'subject 2', 'subject 1'],
      )
      for (const x of results) if (!x.flipped) assert.equal('evidence' in x ? x.evidence : undefined, undefined)
      assert.equal(await s.store.getDisabled('dave'), null)
    })
  })
}

secretsContract('memory', async () => {
  const dir = tmpDir('secrets-store')
  const stateFile = path.join(dir, 'hijack-guard.state.json')
  const store = createMemoryStore({ stateFile })
  return {
    store,
    // every file the store wrote (the state file, and any temporary or lock file left behind)
    dump: async () =>
      fs
        .readdirSync(dir)
        .map((f) => `${f}\n${fs.readFileSync(path.join(dir, f), 'latin1')}`)
        .join('\n'),
    cleanup: () => store.close(),
  }
})

describe('memory store: a state file with a token in clear (written before tokens were hashed)', function () {
  it('drops the clear token and its pointer at the next write, and the record stays disabled', async function () {
    const dir = tmpDir('secrets-old')
    const stateFile = path.join(dir, 'hijack-guard.state.json')
    const token = randomBytes(16).toString('hex')
    fs.writeFileSync(
      stateFile,
      JSON.stringify({
        version: 1,
        disabled: {
          alice: {
            account: 'alice',
            reason: 'limit',
            by: 'limit',
            at: 1,
            incident: 'i',
            counts: [],
            evidence: [],
            token,
            tokenExpiresAt: Date.now() + 60000,
          },
        },
        tokens: { [token]: { account: 'alice', forgetAt: Date.now() + 60000 } },
      }),
    )
    const store = createMemoryStore({ stateFile })
    await store.audit({ at: Date.now(), account: 'bob', action: 'reset', actor: 'cli:test', how: 'cli' })
    assert.ok(!fs.readFileSync(stateFile, 'utf8').includes(token))
    assert.equal((await store.getDisabled('alice'))?.by, 'limit')
    assert.equal(await store.redeem('alice', token), 'mismatch')
    await store.close()
  })
})

describe('redis server for the secrets tests', function () {
  this.timeout(20_000)
  let server: RedisServer
  let admin: RedisClient

  before(async function () {
    server = await startRedis()
    admin = await server.client()
  })

  after(async function () {
    // also closes admin, its client
    await server?.stop()
  })

  secretsContract('redis', async () => {
    await admin.flushAll()
    const store = openRedisStore(server.port, { timeoutMs: 1000 })
    await untilAnswers(store)
    return {
      store,
      // every key name and every value, whatever its type
      async dump() {
        const out: string[] = []
        for (const key of await admin.keys('*')) {
          out.push(key)
          const type = await admin.type(key)
          if (type === 'string') out.push((await admin.get(key)) ?? '')
          else if (type === 'hash') out.push(JSON.stringify(await admin.hGetAll(key)))
          else if (type === 'list') out.push(JSON.stringify(await admin.lRange(key, 0, -1)))
          else if (type === 'set') out.push(JSON.stringify(await admin.sMembers(key)))
          else out.push(`<${type}>`)
        }
        return out.join('\n')
      },
      cleanup: () => store.close(),
    }
  })
})
