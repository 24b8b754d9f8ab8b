// lib/password.ts: the incident's password kept as a salted scrypt hash, never in the clear.

import assert from 'node:assert/strict'
import { hashPassword, samePassword, toPasswordHash } from '../../lib/password'

describe('password hashes ([reactivate] require_new_password)', function () {
  this.timeout(20_000)

  it('keeps a salted scrypt hash that matches the password and nothing else, never the password', async function () {
    const h = await hashPassword('Tr0ub4dor&3', 1234, 'inc1')
    assert.match(h.params, /^scrypt:N=32768,r=8,p=1,len=32$/)
    assert.match(h.salt, /^[0-9a-f]{32}$/)
    assert.match(h.hash, /^[0-9a-f]{64}$/)
    assert.deepEqual([h.at, h.incident], [1234, 'inc1'])
    assert.ok(!JSON.stringify(h).includes('Tr0ub4dor'))
    assert.equal(await samePassword(h, 'Tr0ub4dor&3'), true)
    for (const other of ['tr0ub4dor&3', 'Tr0ub4dor&3 ', '', 'Tr0ub4dor&'])
      assert.equal(await samePassword(h, other), false, JSON.stringify(other))
  })

  it('salts every hash: the same password hashes differently twice', async function () {
    const [a, b] = await Promise.all([hashPassword('same', 1, 'a'), hashPassword('same', 1, 'b')])
    assert.notEqual(a.salt, b.salt)
    assert.notEqual(a.hash, b.hash)
  })

  it('compares Unicode passwords in NFC: a decomposed spelling of the same password matches', async function () {
    const h = await hashPassword('caf\u00e9', 1, 'x')
    assert.equal(await samePassword(h, 'cafe\u0301'), true)
  })

  it('checks a hash made with other stored parameters, and refuses damaged or extreme ones', async function () {
    const h = await hashPassword('pw', 1, 'x')
    assert.equal(await samePassword({ ...h, params: 'md5' }, 'pw'), false)
    assert.equal(await samePassword({ ...h, salt: 'zz' }, 'pw'), false)
    assert.equal(await samePassword({ ...h, hash: h.hash.slice(2) }, 'pw'), false)
    assert.equal(await samePassword({ ...h, params: 'scrypt:N=4194304,r=8,p=1,len=32' }, 'pw'), false)
    assert.equal(
      await samePassword({ ...h, hash: `${h.hash.slice(0, -1)}${h.hash.endsWith('0') ? '1' : '0'}` }, 'pw'),
      false,
    )
  })

  it('reads stored records tolerantly', function () {
    assert.deepEqual(toPasswordHash({ params: 'p', salt: 's', hash: 'h', at: '5', incident: 'i' }), [
      { params: 'p', salt: 's', hash: 'h', at: 5, incident: 'i' },
    ])
    for (const bad of [null, 'x', 1, { params: 'p' }, { params: 1, salt: 's', hash: 'h' }])
      assert.deepEqual(toPasswordHash(bad), [], JSON.stringify(bad))
  })
})
