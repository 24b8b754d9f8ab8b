// The bench's sink, run as a child process of the bench (bench/sink.ts forks it) so that its CPU
// time can be read apart from the load generator's. It counts messages and answers `count` requests.

import { startSink } from '../support'
import { isCountRequest } from './sink'

process.on('disconnect', () => process.exit(0))
startSink({ keepMessages: false }).then(
  (sink) => {
    process.on('message', (m: unknown) => {
      if (isCountRequest(m)) process.send?.({ type: 'count', id: m.id, count: sink.count })
    })
    process.send?.({ type: 'ready', port: sink.port })
  },
  (err: unknown) => {
    console.error(`sink: ${err instanceof Error ? err.message : String(err)}`)
    process.exit(1)
  },
)
