'use strict'

// What the plugin tests share: the compiled plugin loaded through haraka-test-fixtures with the
// memory store and a recording mail seam, and calling its hooks as Haraka would.

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const fixtures = require('haraka-test-fixtures')

const { createMemoryStore } = require('../../dist/lib/store/memory')

const ROOT = path.resolve(__dirname, '..', '..')

// Every plugin test's Haraka directory lives under one temporary root, removed when mocha exits.
let tmpRoot = null
function tmpDir() {
  if (!tmpRoot) {
    tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'hg-plugin-'))
    const root = tmpRoot
    process.once('exit', () => fs.rmSync(root, { recursive: true, force: true }))
  }
  return fs.mkdtempSync(path.join(tmpRoot, 'haraka-'))
}

/**
 * A registered plugin reading `ini` as the operator's config/hijack-guard.ini, with the memory
 * store (or `store`) and a sendMail seam that records into `sent`; plugin log lines go to `logs`.
 */
function makeGuard(ini, { smtpIni = '[main]\nnodes=0\n', store, onRegisterHook } = {}) {
  const dir = tmpDir()
  fs.mkdirSync(path.join(dir, 'config'))
  fs.writeFileSync(path.join(dir, 'config', 'hijack-guard.ini'), ini)
  fs.writeFileSync(path.join(dir, 'config', 'smtp.ini'), smtpIni)
  fs.writeFileSync(path.join(dir, 'config', 'me'), 'mx.test.example\n')
  const plugin = fixtures.makePlugin('hijack-guard', { register: false })
  plugin.config = plugin.config.module_config(ROOT, dir)
  const logs = []
  for (const level of ['loginfo', 'lognotice', 'logwarn', 'logerror', 'logcrit']) {
    plugin[level] = (...args) => logs.push([level, args.map(String).join(' ')])
  }
  if (onRegisterHook) plugin.register_hook = onRegisterHook
  plugin.register()
  plugin.guard.store = store ?? createMemoryStore({ stateFile: path.join(dir, 'state.json') })
  const sent = []
  plugin.guard.sendMail = async (mail) => {
    sent.push(mail)
  }
  return { plugin, dir, logs, sent }
}

/** Calls a hook method as Haraka does; resolves with what it passed to next. */
function call(plugin, method, connection, ...args) {
  return new Promise((resolve) => plugin[method]((rc, msg) => resolve({ rc, msg }), connection, ...args))
}

/** The SMTP reply Haraka would write for a DSN or string message. */
function reply(msg) {
  return msg && typeof msg === 'object' ? `${msg.code} ${msg.reply}` : String(msg)
}

module.exports = { makeGuard, call, reply }
