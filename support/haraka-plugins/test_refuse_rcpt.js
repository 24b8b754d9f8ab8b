// JavaScript because Haraka loads plugins from DIR/plugins/*.js and cannot load TypeScript.
// Test-only: refuses every recipient whose local part starts with "nosuch" at RCPT TO with 550,
// like a plugin that knows the local users.
'use strict'

exports.hook_rcpt = function (next, connection, params) {
  if (/^nosuch/i.test(params[0].user ?? '')) return next(DENY, 'No such user here')
  next()
}
