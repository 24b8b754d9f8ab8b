/**
 * What each hook decides, one file per SMTP phase: auth.ts (the AUTH gate and the wrapper around
 * the auth plugins), mail.ts (MAIL FROM), rcpt.ts (recipients per message), replies.ts (RCPT of the reply address and consuming a
 * reply), queue.ts (counting at queue_outbound), held.ts (outbound mail of a disabled account),
 * invalid.ts ([signals] invalid_recipients: refused RCPTs and hard bounces);
 * state.ts is what every hook receives and how a store failure becomes the configured policy,
 * mailer.ts the plugin's own mail. index.ts at the root only finds the state and calls these.
 */
export { authOutcome, authRefusal, wrapAuthPlugins } from './auth'
export { bouncedRecipients, countInvalid, refusedRecipient, type DenyParams, type InvalidRecipients } from './invalid'
export { checkHeld, holdCandidate, refuseDropped, releaseWaiting, suppressBounce, type QueuedMail } from './held'
export { emitEvent, emitPasswordRefused, type PasswordRefusal } from './events'
export { checkMail } from './mail'
export { countMessage, type CountNote } from './queue'
export { checkRecipientCap } from './rcpt'
export { checkRcpt, consumeReply, isReplyToAlert } from './replies'
export { newProcessState, storeErrorVerdict, type GuardState, type ProcessState } from './state'
