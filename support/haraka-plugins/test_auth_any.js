// JavaScript because Haraka loads plugins from DIR/plugins/*.js and cannot load TypeScript.
// Test-only: accepts any login with the password 'secret' (AUTH PLAIN and LOGIN, on loopback),
// for logins no ini file can hold; logs each login as JSON.
'use strict'

exports.register = function () {
  this.inherits('auth/auth_base')
}

exports.hook_capabilities = function (next, connection) {
  if (!connection.remote.is_local && !connection.remote.is_private && !connection.tls.enabled) return next()
  connection.capabilities.push('AUTH PLAIN LOGIN')
  connection.notes.allowed_auth_methods = ['PLAIN', 'LOGIN']
  next()
}

exports.get_plain_passwd = function (user, connection, cb) {
  connection.loginfo(this, 'login=' + JSON.stringify(user))
  cb('secret')
}
