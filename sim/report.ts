// The simulator's report: the table and notes on stdout, and the same results as the Markdown
// table of docs/detection.md (--markdown).

import type { ProfileResult, Target } from './simulate'

const pad = (s: string | number, n: number): string => String(s).padStart(n)
const padEnd = (s: string, n: number): string => s.padEnd(n)

/** The results table, a line of notes per profile, and a PASS/MISS line per target. */
export function report(results: readonly ProfileResult[], targets: readonly Target[]): void {
  console.log('')
  console.log(
    `${padEnd('profile', 17)}${pad('kind', 7)}${pad('accts', 6)}${pad('attempted', 10)}${pad('accepted', 9)}${pad('escaped', 8)}` +
      `${pad('disabled', 9)}${pad('min to disable', 15)}${pad('false dis.', 11)}${pad('warn/user/wk', 13)}${pad('alerts', 7)}`,
  )
  for (const r of results) {
    const disabled = `${r.disabledAccounts}/${r.accounts}`
    const minutes = r.kind === 'hijack' ? (r.minutesToDisable === null ? '-' : r.minutesToDisable) : ''
    console.log(
      `${padEnd(r.name, 17)}${pad(r.kind, 7)}${pad(r.accounts, 6)}${pad(r.attempted, 10)}${pad(r.accepted, 9)}` +
        `${pad(r.kind === 'hijack' ? r.escaped : '', 8)}${pad(disabled, 9)}${pad(minutes, 15)}` +
        `${pad(r.kind === 'legit' ? r.falseDisables : '', 11)}${pad(r.kind === 'legit' ? r.maxWarningsPerUserWeek : '', 13)}` +
        `${pad(r.mails.disable + r.mails.spray + r.mails.warning + r.mails.monitor, 7)}`,
    )
  }
  console.log('')
  for (const r of results) {
    const notes: string[] = [`${r.simulatedDays} days`]
    if (r.kind === 'hijack' && r.attempted > 0) {
      notes.push(
        `per account: escaped at most ${r.maxEscapedPerAccount}; minutes to disable ${r.minutesToDisablePerAccount.map((m) => m ?? 'never').join(', ')}`,
      )
    }
    if (r.authFailures > 0) {
      notes.push(
        `${r.authFailures} failed AUTHs, ${r.mails.spray} spraying alerts` +
          (r.maxFailuresBeforeAlert === null
            ? ''
            : `, each login alerted by its failed AUTH #${r.maxFailuresBeforeAlert} (${r.minutesToAlert} min)`),
      )
    }
    const ref = r.refused
    if (ref.auth + ref.mail + ref.queue > 0)
      notes.push(`refused at AUTH ${ref.auth}, MAIL ${ref.mail}, queue ${ref.queue}`)
    if (r.invalidRecipients > 0)
      notes.push(
        `${r.invalidRecipients} invalid recipients refused by another plugin` +
          (ref.rcpt > 0 ? ` (${ref.rcpt} messages left with no recipient)` : ''),
      )
    if (r.recipientsRefused > 0) notes.push(`${r.recipientsRefused} recipients refused by the plugin`)
    if (r.warnings > 0) notes.push(`${r.warnings} warnings`)
    console.log(`  ${padEnd(r.name, 17)}${notes.join('; ')}`)
  }
  console.log('')
  console.log('targets (issue 11):')
  for (const t of targets) {
    console.log(`  ${mark(t).padEnd(4)}  ${t.target}: ${t.detail}`)
  }
}

const mark = (t: Target): string => (t.pass === null ? 'n/a' : t.pass ? 'PASS' : 'MISS')

/** The results as a Markdown table and the targets as a list (docs/detection.md). */
export function markdown(results: readonly ProfileResult[], targets: readonly Target[]): string {
  const n = (x: number): string => x.toLocaleString('en-US')
  const lines = [
    '| profile | kind | accounts | attempted | accepted | escaped | disabled | minutes to disable (slowest) | most escaped by one account | false disables | warnings per user per week |',
    '| --- | --- | --: | --: | --: | --: | --: | --: | --: | --: | --: |',
  ]
  for (const r of results) {
    const hijack = r.kind === 'hijack'
    const minutes =
      !hijack || r.attempted === 0 ? '-' : r.minutesToDisable === null ? 'never' : String(r.minutesToDisable)
    lines.push(
      `| ${r.name} | ${r.kind} | ${r.accounts} | ${n(r.attempted)} | ${n(r.accepted)} | ${hijack ? n(r.escaped) : '-'} | ` +
        `${r.disabledAccounts}/${r.accounts} | ${minutes} | ${hijack ? n(r.maxEscapedPerAccount) : '-'} | ` +
        `${hijack ? '-' : r.falseDisables} | ${hijack ? '-' : r.maxWarningsPerUserWeek} |`,
    )
  }
  lines.push('', ...targets.map((t) => `- **${mark(t)}** ${t.target}: ${t.detail}.`))
  return lines.join('\n')
}
