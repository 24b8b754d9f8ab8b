// JavaScript because Haraka loads plugins from DIR/plugins/*.js and cannot load TypeScript.
// Test-only relay policy for proxied sessions (list it after xclient in beforePlugins): Haraka's
// xclient plugin sets relaying = false after XCLIENT; this grants it again to XCLIENT sessions
// named relay-ok.test (XCLIENT NAME=relay-ok.test), so their mail to the outside reaches
// queue_outbound.
'use strict'

exports.hook_mail = function (next, connection) {
  if (connection.xclient && connection.remote.host === 'relay-ok.test') connection.relaying = true
  next()
}
