// JavaScript because Haraka loads plugins from DIR/plugins/*.js and cannot load TypeScript.
// Test-only (list it in beforePlugins, before auth/auth_proxy): offers AUTH PLAIN/LOGIN on
// loopback and private connections without TLS, which auth_proxy alone offers only over TLS. The
// AUTH itself stays auth_proxy's.
'use strict'

exports.hook_capabilities = function (next, connection) {
  if (connection.remote.is_local || connection.remote.is_private) {
    connection.capabilities.push('AUTH PLAIN LOGIN')
    connection.notes.allowed_auth_methods = ['PLAIN', 'LOGIN']
  }
  next()
}
