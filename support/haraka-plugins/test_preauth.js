// JavaScript because Haraka loads plugins from DIR/plugins/*.js and cannot load TypeScript.
// Test-only auth path the plugin cannot wrap (list it in beforePlugins): a session whose EHLO
// name is preauth-<hex of login>.test counts as logged in as that login, the way a session of
// an auth plugin that is not an auth_base descendant would. See preauthName() in haraka.ts.
'use strict'

exports.hook_ehlo = function (next, connection, helo) {
  const m = /^preauth-([0-9a-f]+)\.test$/.exec(String(helo))
  if (m) {
    connection.relaying = true
    connection.notes.auth_user = Buffer.from(m[1], 'hex').toString('utf8')
    connection.loginfo(this, 'preauth ' + JSON.stringify(connection.notes.auth_user))
  }
  next()
}
