// npm run demo: a real Haraka with the plugin built from this checkout stops a hijacked account.
// Everything runs on 127.0.0.1: Haraka, redis-server (or the embedded memory store when
// redis-server is not installed), and a sink that stands in for the rest of the internet.
//
//   npm run demo            paced, for reading
//   npm run demo -- --fast  no pauses (what the smoke test runs)

import { execFileSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import {
  REDIS_SERVER,
  createHaraka,
  openSession,
  sendOne,
  startRedis,
  startSink,
  stopAll,
  tryAuth,
  waitUntil,
  type SinkMessage,
  type SmtpResult,
} from '../support'

const TTY = process.stdout.isTTY === true
const FAST = process.argv.includes('--fast') || !TTY
const LIMIT = 25
const PW = 'demo-password'
const ALICE = 'alice@example.com'
const BOB = 'bob@example.com'
const ADMIN = 'postmaster@example.com'
const OUTSIDE = ['buyer1@victims.example', 'buyer2@victims.example', 'ceo@another.example']

const color = (code: number, s: string): string => (TTY ? `\x1b[${code}m${s}\x1b[0m` : s)
const bold = (s: string): string => color(1, s)
const dim = (s: string): string => color(2, s)
const green = (s: string): string => color(32, s)
const red = (s: string): string => color(31, s)

const say = (text = ''): void => {
  process.stdout.write(`${text}\n`)
}
const pause = (ms: number): Promise<void> =>
  FAST ? Promise.resolve() : new Promise((resolve) => setTimeout(resolve, ms))
const reply = (r: SmtpResult): string => `${r.code} ${r.response.replace(/^\d{3}[ -]/, '').split('\n')[0]}`
const shown = (r: SmtpResult): string =>
  r.code !== null && r.code >= 200 && r.code < 300 ? green(reply(r)) : red(reply(r))

function hasRedis(): boolean {
  try {
    execFileSync(REDIS_SERVER, ['--version'], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

async function step(title: string): Promise<void> {
  say()
  say(bold(`== ${title}`))
  await pause(900)
}

function progress(done: number, accepted: number, refused: number): void {
  const width = 30
  const filled = Math.round((done / LIMIT / 1.4) * width)
  const bar = `[${'#'.repeat(Math.min(width, filled))}${'.'.repeat(Math.max(0, width - filled))}]`
  const line = `  ${bar} ${accepted} accepted, ${refused} refused`
  if (TTY) process.stdout.write(`\r${line}`)
  else if (done % 10 === 0 || refused > 0) say(line)
}

/** The value of the first `name:` header line of a raw message. */
function header(message: SinkMessage, name: string): string {
  const value = new RegExp(`^${name}:\\s*(.+)$`, 'im').exec(message.raw)?.[1]?.trim()
  if (!value) throw new Error(`the message "${message.subject}" has no ${name} header`)
  return value
}

async function main(): Promise<void> {
  const started = Date.now()
  say(bold('hijack-guard demo: a stolen password meets the plugin'))
  say(dim('Everything runs on 127.0.0.1 and is removed at the end (also on Ctrl-C).'))

  await step('1. Setting up: an outside-world sink, the store, and Haraka with the plugin')
  const sink = await startSink()
  say(`  sink (stands in for the internet) on port ${sink.port}`)
  let store = ['[main]', 'store = memory']
  if (hasRedis()) {
    const redis = await startRedis()
    store = ['[main]', 'store = redis', '[redis]', `port = ${redis.port}`]
    say(`  redis-server on port ${redis.port} (the store)`)
  } else {
    say('  redis-server is not installed: using the embedded memory store (one Haraka process)')
  }
  const pluginIni = [
    ...store,
    '[limits]',
    `messages = ${LIMIT}/10m`,
    'recipients = 500/10m',
    '[alert]',
    `to = ${ADMIN}`,
    '',
  ].join('\n')
  say(dim('  packing the plugin from this checkout and installing it into a fresh Haraka (npm install)...'))
  const srv = await createHaraka({
    sink,
    me: 'mx.example.com',
    localDomains: ['example.com'],
    users: { [ALICE]: PW, [BOB]: PW, [ADMIN]: PW },
    pluginIni,
  })
  await srv.start()
  const port = srv.port
  say(`  Haraka listening on 127.0.0.1:${port}, plugins: auth/flat_file, hijack-guard`)
  say(`  limit: ${bold(`${LIMIT} messages per 10 minutes`)} per login (the default is 500 per 30 minutes)`)

  await step(`2. Normal life: ${BOB} sends a few messages`)
  const bob = await openSession({ port, user: BOB, pass: PW })
  say(`  AUTH PLAIN ${BOB} -> ${green('235 Authentication successful')}`)
  for (let i = 1; i <= 3; i++) {
    const r = await bob.send({ from: BOB, to: [`friend${i}@elsewhere.example`], subject: `Lunch ${i}?` })
    say(`  message ${i} -> ${shown(r)}`)
    await pause(300)
  }
  await bob.close()

  await step(`3. The hijack: someone logs in as ${ALICE} with her stolen password and bursts spam`)
  const spam = await openSession({ port, user: ALICE, pass: PW })
  let accepted = 0
  let refused: { i: number; r: SmtpResult } | null = null
  for (let i = 1; i <= LIMIT + 10 && !refused; i++) {
    const r = await spam.send({
      from: ALICE,
      to: OUTSIDE,
      subject: `Invoice #${1000 + i} overdue`,
      body: 'Pay here: http://phish.example/',
    })
    if (r.code === 250) accepted++
    else refused = { i, r }
    progress(i, accepted, refused ? 1 : 0)
  }
  if (TTY) say()
  if (!refused) throw new Error('the plugin never refused the burst')
  say(`  message ${refused.i} -> ${red(reply(refused.r))}`)
  say(`  ${bold(`${accepted} messages got out, the ${refused.i}th was refused, and the account is now disabled.`)}`)
  const more = await spam.send({ from: ALICE, to: OUTSIDE, subject: 'one more' })
  say(`  the spammer's same session tries again: MAIL FROM -> ${red(reply(more))}`)
  await spam.close()
  const auth = await tryAuth({ port, user: ALICE, pass: PW })
  say(`  a new login with the right password -> ${red(`${auth.code} ${auth.response.replace(/^\d{3} /, '')}`)}`)
  const bob2 = await sendOne({
    port,
    user: BOB,
    pass: PW,
    from: BOB,
    to: ['friend@elsewhere.example'],
    subject: 'still here',
  })
  say(`  meanwhile ${BOB} is not affected -> ${shown(bob2)}`)

  await step(`4. The alert: the postmaster (${ADMIN}) gets the evidence`)
  const alert = await waitUntil(() => sink.messages.find((m) => /disabled/.test(m.subject ?? '')), {
    timeoutMs: 20_000,
    message: 'the alert',
  })
  const replyTo = header(alert, 'Reply-To')
  const messageId = header(alert, 'Message-ID')
  say(dim('  ---------------------------------------------------------------------------'))
  for (const line of alert.raw.replace(/\r\n/g, '\n').split('\n')) {
    if (/^(Received|Authentication-Results|DKIM|X-Haraka|\s)/.test(line) && !/^\s+\S/.test(line)) continue
    if (/^(MIME-Version|Content-[\w-]+|X-Auto[\w-]*|Date):/.test(line)) continue
    say(`  ${line}`)
  }
  say(dim('  ---------------------------------------------------------------------------'))
  await pause(2500)

  await step('5. The postmaster changes the password, then simply replies to the alert')
  const admin = await openSession({ port, user: ADMIN, pass: PW })
  const r = await admin.send({
    from: ADMIN,
    to: [replyTo],
    subject: `Re: ${alert.subject}`,
    headers: { 'In-Reply-To': messageId, References: messageId },
    body: 'Password changed, please re-enable.\n\n> The account alice@example.com was disabled ...',
  })
  await admin.close()
  say(`  reply to ${replyTo} (logged in as ${ADMIN}) -> ${shown(r)}`)
  const confirmation = await waitUntil(() => sink.messages.find((m) => /re-enabled/.test(m.subject ?? '')), {
    timeoutMs: 20_000,
    message: 'the confirmation',
  })
  say(`  the postmaster's confirmation: "${confirmation.subject}"`)
  say(dim('  (the reply itself is consumed by the plugin: it is not delivered anywhere)'))

  await step(`6. The stolen password stays refused; ${ALICE} works again with a new one`)
  const stolen = await tryAuth({ port, user: ALICE, pass: PW })
  say(`  AUTH with the password the attacker used -> ${shown(stolen)}`)
  // The owner changes the password in the auth backend (here auth/flat_file, which Haraka reloads).
  const NEW_PW = 'a-new-password'
  fs.writeFileSync(
    path.join(srv.dir, 'config', 'auth_flat_file.ini'),
    [
      '[core]',
      'methods=PLAIN,LOGIN',
      '',
      '[users]',
      ...[
        [ALICE, NEW_PW],
        [BOB, PW],
        [ADMIN, PW],
      ].map(([u, p]) => `${u}=${p}`),
      '',
    ].join('\n'),
  )
  say(`  the password of ${ALICE} is changed in config/auth_flat_file.ini`)
  const back = await waitUntil(
    async () => {
      const r = await sendOne({
        port,
        user: ALICE,
        pass: NEW_PW,
        from: ALICE,
        to: ['colleague@elsewhere.example'],
        subject: 'Sorry about that',
      })
      return r.code === 250 ? r : null
    },
    { timeoutMs: 20_000, intervalMs: 500, message: 'the new password to work once Haraka has reloaded the file' },
  )
  say(`  AUTH with the new password + message from ${ALICE} -> ${shown(back)}`)

  // outbound delivers once per recipient domain: count distinct messages, once all have arrived
  const spamSubjects = (): Set<string | undefined> =>
    new Set(sink.messages.filter((m) => /^Invoice #/.test(m.subject ?? '')).map((m) => m.subject))
  await waitUntil(() => spamSubjects().size >= accepted, {
    timeoutMs: 20_000,
    message: 'the accepted spam at the sink',
  })
  const spamOut = spamSubjects().size
  say()
  say(bold('Summary'))
  say(`  spam messages that reached the outside world: ${spamOut} (the limit), then nothing`)
  say("  alerts sent: 1; account re-enabled by the admin's reply; the stolen password refused until changed")
  say(
    `  done in ${((Date.now() - started) / 1000).toFixed(1)} s. Try the CLI on a real server: HARAKA_DIR/node_modules/.bin/hijack-guard -c HARAKA_DIR list`,
  )
  if (back.code !== 250 || r.code !== 250 || stolen.code !== 535 || spamOut !== LIMIT)
    throw new Error('the demo did not go as expected')
}

let stopping = false
async function cleanUp(code: number): Promise<void> {
  if (stopping) return
  stopping = true
  await stopAll().catch(() => undefined)
  process.exit(code)
}
// support/process.ts kills what was started on these signals first; this says so and exits.
process.on('SIGINT', () => {
  say('\ninterrupted: cleaning up')
  void cleanUp(130)
})
process.on('SIGTERM', () => void cleanUp(143))

main().then(
  () => cleanUp(0),
  (err: unknown) => {
    process.stderr.write(`demo failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
    return cleanUp(1)
  },
)
