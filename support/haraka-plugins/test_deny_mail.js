// JavaScript because Haraka loads plugins from DIR/plugins/*.js and cannot load TypeScript.
// Test-only: refuses the sender hangup@... at MAIL FROM with 550 and hangs up.
'use strict'

exports.hook_mail = function (next, connection, params) {
  if (params[0].user === 'hangup') return next(DENYDISCONNECT, 'go away')
  next()
}
