import * as assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as path from 'node:path'

import { StoreError, type AuditEntry, type DisabledRecord, type Store } from '../../lib/store'
import { createMemoryStore } from '../../lib/store/memory'
import { tmpDir } from '../../support/process'
import { readStateFile } from './state-file'
import { contract, ODD_ACCOUNTS, recordInput, rules, summary, T0, type InjectedClockStore } from './contract'

describe('memory store', function () {
  contract(
    'memory',
    async ({ now }): Promise<InjectedClockStore> => {
      let t = now
      const store = createMemoryStore({
        stateFile: path.join(tmpDir('memory-store'), 'hijack-guard.state.json'),
        now: () => t,
      })
      return {
        store,
        clock: 'injected',
        advance(ms) {
          t += ms
        },
        now: () => t,
        cleanup: () => store.close(),
      }
    },
    { clock: 'injected' },
  )

  describe('memory store: the state file', function () {
    let dir: string
    let file: string

    beforeEach(function () {
      dir = tmpDir('memory-store')
      file = path.join(dir, 'hijack-guard.state.json')
    })

    async function trip(store: Store, account: string): Promise<DisabledRecord> {
      const r = rules({ messages: '1/1h' })
      await store.record(recordInput(account, r, { summary: summary(1) }))
      const res = await store.record(recordInput(account, r, { summary: summary(2) }))
      assert.equal(res.status, 'refused')
      return res.record
    }

    it('keeps disabled accounts, with their records, for a new store on the same file', async function () {
      const first = createMemoryStore({ stateFile: file, now: () => T0 })
      const tripped = await trip(first, 'alice')
      await first.disable({ account: 'bob', reason: 'phished', by: 'cli:root', incident: 'inc-b' })
      await first.close()

      const second = createMemoryStore({ stateFile: file, now: () => T0 + 1000 })
      assert.deepEqual(await second.getDisabled('alice'), tripped)
      assert.equal((await second.getDisabled('bob'))?.reason, 'phished')
      assert.deepEqual((await second.listDisabled()).map((r) => r.account).sort(), ['alice', 'bob'])
      const res = await second.record(recordInput('alice', rules({ messages: '100/1h' }), { summary: summary(3) }))
      assert.equal(res.status, 'disabled')
    })

    it('keeps reactivation tokens and the audit trail for a new store on the same file', async function () {
      const first = createMemoryStore({ stateFile: file })
      const r = rules({ messages: '1/1h' })
      const token = 'e'.repeat(32)
      await first.record(recordInput('alice', r))
      assert.equal((await first.record({ ...recordInput('alice', r), token })).status, 'refused')
      const entry: AuditEntry = { at: 5, account: 'alice', action: 'disable', actor: 'limit', how: 'limit' }
      await first.audit(entry)

      const second = createMemoryStore({ stateFile: file })
      assert.equal(await second.tokenAccount(token), 'alice')
      assert.deepEqual(await second.auditLog(), [entry])
      assert.equal(await second.redeem('alice', token), 'ok')
      const third = createMemoryStore({ stateFile: file })
      assert.equal(await third.getDisabled('alice'), null)
      assert.equal(await third.redeem('alice', token), 'not-disabled')
    })

    it('keeps an enable for a new store on the same file', async function () {
      const first = createMemoryStore({ stateFile: file })
      await trip(first, 'alice')
      await trip(first, 'bob')
      assert.equal(await first.enable('alice'), true)
      const second = createMemoryStore({ stateFile: file })
      assert.equal(await second.getDisabled('alice'), null)
      assert.notEqual(await second.getDisabled('bob'), null)
    })

    it('keeps odd account names exactly across a restart', async function () {
      const first = createMemoryStore({ stateFile: file })
      for (const account of ODD_ACCOUNTS) await first.disable({ account, reason: 'manual', by: 'test', incident: 'i' })
      const second = createMemoryStore({ stateFile: file })
      assert.deepEqual((await second.listDisabled()).map((r) => r.account).sort(), [...ODD_ACCOUNTS].sort())
      for (const account of ODD_ACCOUNTS) assert.equal((await second.getDisabled(account))?.account, account)
      assert.equal(await second.getDisabled('toString'), null)
    })

    it('replaces the file by rename on every change and leaves no temporary file behind', async function () {
      fs.writeFileSync(path.join(dir, 'other-file'), 'x')
      const store = createMemoryStore({ stateFile: file })
      await store.disable({ account: 'a', reason: 'manual', by: 'test', incident: 'i' })
      const before = fs.statSync(file).ino
      await store.disable({ account: 'b', reason: 'manual', by: 'test', incident: 'i' })
      await store.enable('a')
      await trip(store, 'c')
      // A rename gives the path a new inode; writing in place would keep it.
      assert.notEqual(fs.statSync(file).ino, before)
      assert.deepEqual(fs.readdirSync(dir).sort(), ['hijack-guard.state.json', 'other-file'])
      const state = readStateFile(file)
      assert.deepEqual(Object.keys(state.disabled).sort(), ['b', 'c'])
    })

    it('starts empty when the file is missing and creates it, with its directory, on the first disable', async function () {
      const nested = path.join(dir, 'sub', 'dir', 'state.json')
      const store = createMemoryStore({ stateFile: nested })
      assert.deepEqual(await store.listDisabled(), [])
      assert.equal(await store.getDisabled('alice'), null)
      assert.equal(fs.existsSync(nested), false)
      await store.disable({ account: 'alice', reason: 'manual', by: 'test', incident: 'i' })
      assert.equal(readStateFile(nested).disabled.alice?.reason, 'manual')
    })

    const damaged: [string, string][] = [
      ['not JSON', '{"version":1,"disabled":'],
      ['empty', ''],
      ['null', 'null'],
      ['an array', '[]'],
      ['without a "disabled" object', '{"version":1}'],
      ['a record that is null', '{"version":1,"disabled":{"alice":null}}'],
      ['a record that is a string', '{"version":1,"disabled":{"alice":"yes"}}'],
      ['evidence that is not a list', '{"version":1,"disabled":{"alice":{"reason":"limit","evidence":"x"}}}'],
    ]
    for (const [what, text] of damaged) {
      it(`refuses to start with a StoreError naming the file when the state file is ${what}`, function () {
        fs.writeFileSync(file, text)
        assert.throws(
          () => createMemoryStore({ stateFile: file }),
          (err) => err instanceof StoreError && err.message.includes(file),
        )
        assert.equal(fs.readFileSync(file, 'utf8'), text, 'the damaged file is left for the operator')
      })
    }

    it('rejects with StoreError when the state file cannot be written', async function () {
      const sub = path.join(dir, 'sub')
      const store = createMemoryStore({ stateFile: path.join(sub, 'state.json') })
      fs.writeFileSync(sub, 'a file where the directory should be')
      await assert.rejects(store.disable({ account: 'alice', reason: 'manual', by: 'test', incident: 'i' }), StoreError)
    })
  })
})
