// send-node.cjs: sends a scripted list of calls with @segment/analytics-node and waits until it has flushed.
// Run by testenv.RunNodeClient (testenv/clients.go), which sets NODE_PATH to the node_modules that
// testenv/clients/install.sh installed. Input: one JSON object on stdin,
//   {"host": "http://127.0.0.1:PORT", "writeKey": "...", "calls": [{"type": "track", ...}, ...],
//    "maxRetries": N|null, "flushAt": N|null, "flushInterval": ms|null}
// Output: one JSON line on stdout, {"sent": N, "failed": N, "errors": ["..."]}. Exit status 1 when any
// call was not delivered (the library reports it through the call's callback), 2 on bad input.
'use strict'
const { Analytics } = require('@segment/analytics-node')

function readStdin() {
  return new Promise((resolve, reject) => {
    let data = ''
    process.stdin.setEncoding('utf8')
    process.stdin.on('data', (c) => (data += c))
    process.stdin.on('end', () => resolve(data))
    process.stdin.on('error', reject)
  })
}

// message maps one scripted call onto the object analytics-node's method of that type takes.
function message(c) {
  const m = {}
  for (const k of ['userId', 'anonymousId', 'previousId', 'groupId', 'event', 'name', 'category',
    'traits', 'properties', 'context', 'timestamp', 'messageId', 'integrations']) {
    if (c[k] !== undefined && c[k] !== null) m[k] = c[k]
  }
  if (m.timestamp) m.timestamp = new Date(m.timestamp)
  return m
}

async function main() {
  let input
  try {
    input = JSON.parse(await readStdin())
  } catch (e) {
    process.stderr.write(`send-node: stdin is not JSON: ${e.message}\n`)
    process.exit(2)
  }
  const settings = { writeKey: input.writeKey, host: input.host }
  if (input.maxRetries != null) settings.maxRetries = input.maxRetries
  if (input.flushAt != null) settings.flushAt = input.flushAt
  if (input.flushInterval != null) settings.flushInterval = input.flushInterval
  const analytics = new Analytics(settings)
  const result = { sent: 0, failed: 0, errors: [] }
  const done = []
  for (const c of input.calls) {
    const fn = analytics[c.type]
    if (typeof fn !== 'function') {
      process.stderr.write(`send-node: unknown call type ${JSON.stringify(c.type)}\n`)
      process.exit(2)
    }
    done.push(new Promise((resolve) => {
      fn.call(analytics, message(c), (err) => {
        if (err) {
          result.failed++
          result.errors.push(String((err && err.reason) || err))
        } else {
          result.sent++
        }
        resolve()
      })
    }))
  }
  await analytics.closeAndFlush()
  await Promise.all(done)
  process.stdout.write(JSON.stringify(result) + '\n')
  process.exit(result.failed ? 1 : 0)
}

main().catch((e) => {
  process.stderr.write(`send-node: ${e.stack || e}\n`)
  process.exit(2)
})
