// JavaScript because Haraka loads plugins from DIR/plugins/*.js and cannot load TypeScript.
// Test-only: keeps every lookup and every delivery on loopback (reverse DNS, outbound MX).
'use strict'

exports.register = function () {
  this.load_cfg()
}

exports.load_cfg = function () {
  this.cfg = this.config.get('test_loopback.ini', () => this.load_cfg())
}

// Answers reverse DNS without asking DNS.
exports.hook_lookup_rdns = function (next, connection) {
  const ip = String(connection.remote.ip || '')
  if (/^(127\.|::1$|::ffff:127\.)/.test(ip)) return next(OK, 'localhost')
  next(OK, 'unknown.test.invalid')
}

// Routes ALL outbound mail to the loopback sink named in test_loopback.ini.
exports.hook_get_mx = function (next) {
  const port = parseInt(this.cfg.main.sink_port, 10)
  if (!port) return next(DENYSOFT, 'test_loopback: no sink configured')
  next(OK, { exchange: this.cfg.main.sink_host || '127.0.0.1', port, priority: 0 })
}
