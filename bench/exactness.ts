// Section 5: exactness under load: parallel SMTP sessions of one account (support's nodemailer
// client) against a small limit; the plugin must accept exactly the limit.

import { escapeRegExp, openSession, type Session } from '../support'
import type { BenchEnv } from './env'
import { FILL, RCPT } from './load'
import { say, target } from './report'
import type { ExactTrial, ExactnessResult, Target } from './result'

/** `sessions` parallel sessions of `account` send until the plugin refuses them. */
async function trial(port: number, account: string, sessions: number) {
  const r = { accepted: 0, refusedData: 0, refusedMail: 0, other: 0 }
  async function one(): Promise<void> {
    let s: Session
    try {
      s = await openSession({ port, user: account, pass: 'pw' })
    } catch {
      r.other++
      return
    }
    for (let i = 0; i < 100_000; i++) {
      const x = await s.send({ from: account, to: [RCPT], subject: `burst ${i}`, body: FILL })
      if (x.code === 250) {
        r.accepted++
        continue
      }
      if (x.stage === 'data' && x.code === 550) r.refusedData++
      else if (x.stage === 'mail' && x.code === 550) r.refusedMail++
      else r.other++
      break
    }
    await s.close()
  }
  await Promise.all(Array.from({ length: sessions }, one))
  return r
}

export async function exactness(env: BenchEnv): Promise<{ result: ExactnessResult; targets: Target[] }> {
  const o = env.options
  const withPlugin = env.sides.with.haraka
  say()
  say(`5. exactness: ${o.exactSessions} parallel sessions of one account against messages = ${o.exactLimit}/1m`)
  const trials: ExactTrial[] = []
  for (const account of env.exactAccounts) {
    const mark = withPlugin.logMark()
    const r = await trial(withPlugin.port, account, o.exactSessions)
    const disabled = (await env.redis.command(['EXISTS', env.dist.accountKeys(account).disabled])) === 1
    await new Promise((resolve) => setTimeout(resolve, 200)) // the incident's log line
    const log = withPlugin.log().slice(mark)
    const incidents = (log.match(new RegExp(`ACCOUNT DISABLED "${escapeRegExp(account)}"`, 'g')) ?? []).length
    trials.push({ account, ...r, disabled, incidents })
    say(
      `  ${account}: accepted ${r.accepted} (limit ${o.exactLimit}), refused at DATA ${r.refusedData}, refused at MAIL FROM ${r.refusedMail}, other ${r.other}; disabled ${disabled ? 'yes' : 'no'}; incidents logged ${incidents}`,
    )
  }
  const ok = trials.every((r) => r.accepted === o.exactLimit)
  const accepted = trials.map((r) => r.accepted)
  // the trial farthest from the limit
  const worst = accepted.reduce(
    (a, b) => (Math.abs(b - o.exactLimit) > Math.abs(a - o.exactLimit) ? b : a),
    o.exactLimit,
  )
  const targets = [
    target(
      ok,
      'exactness: parallel sessions against a limit accept exactly the limit',
      worst,
      `${accepted.join(', ')} accepted, limit ${o.exactLimit} (${o.exactSessions} sessions)`,
    ),
  ]
  return { result: { sessions: o.exactSessions, limit: o.exactLimit, accepted: worst, trials, ok }, targets }
}
