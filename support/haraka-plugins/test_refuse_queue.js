// JavaScript because Haraka loads plugins from DIR/plugins/*.js and cannot load TypeScript.
// Test-only (list it in extraPlugins, after hijack-guard): a queue_outbound hook that refuses
// some messages, or never answers, like a smarthost forwarder whose upstream refuses them or
// hangs. By subject: "refuse-perm" gets DENY "upstream refused it", "refuse-temp" DENYSOFT
// "upstream busy", "hang" no answer (Haraka's plugin timeout answers: set it with
// config/test_refuse_queue.timeout); anything else goes on.
'use strict'

exports.hook_queue_outbound = function (next, connection) {
  const subject = String(connection.transaction.header.get('Subject') || '')
  if (subject.includes('refuse-perm')) return next(DENY, 'upstream refused it')
  if (subject.includes('refuse-temp')) return next(DENYSOFT, 'upstream busy')
  if (subject.includes('hang')) return
  next()
}
