// Realistic message summaries for the store's evidence: an IP, a HELO name like DESKTOP-1A2B3C,
// one or two recipient domains, a real-looking subject.

import type { MessageSummary } from '../lib/store'

const SUBJECTS = [
  'Re: Quarterly figures, please review before Friday',
  'Invoice 2024-0{n} for your records',
  'Meeting notes from Tuesday',
  'Fwd: Updated delivery schedule for next week',
  'Your order #{n} has shipped',
  'Lunch on Thursday?',
]
const DOMAINS = ['gmail.com', 'outlook.com', 'yahoo.com', 'example.org', 'partner-company.example', 'gmx.de']

const pick = <T>(list: readonly T[], i: number): T => list[i % list.length] as T

/** The summary of account i's message j. */
export function summaryFor(i: number, j: number): MessageSummary {
  return {
    ip: `198.51.${(i >> 8) & 255}.${i & 255}`,
    helo: `DESKTOP-${(i * 7919 + 1000000).toString(36).toUpperCase()}`,
    domains: [pick(DOMAINS, i + j), ...(j % 3 === 0 ? [pick(DOMAINS, i + j + 1)] : [])],
    subject: pick(SUBJECTS, i + j).replace('{n}', String(1000 + ((i * 31 + j) % 9000))),
  }
}

/**
 * The j-th of an account's distinct summaries (j < 256): every field differs from the others'
 * (another network and HELO name, another recipient domain, another subject), so that evidence
 * keeping distinct values holds as much as it can.
 */
export function distinctSummaryFor(i: number, j: number): MessageSummary {
  return {
    ip: `203.0.${j & 255}.${i & 255}`,
    helo: `LAPTOP-${(i * 7919 + j * 104729 + 1000000).toString(36).toUpperCase()}`,
    domains: [`partner${j}.example`],
    subject: `${pick(SUBJECTS, j).replace('{n}', String(1000 + j))} (${j + 1})`,
  }
}
