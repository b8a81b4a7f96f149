// The fake XAPI as npm's `xen-api` (Xen Orchestra's connector, JSON-RPC) sees it: connect
// (login, pool and host records, system.listMethods, event.inject, event.from), list
// templates, clone and provision as tasks watched through events, start, read the guest
// metrics, shut down and destroy with the disks, disconnect. Run under
// `fake_xapi.py run --` (BIOXEN_TEST_XAPI) with NODE_PATH naming the installed package.
// If this client and the fake disagree, the fake is wrong.
import { createRequire } from 'node:module'
import assert from 'node:assert/strict'

const require = createRequire(process.env.XEN_API_MODULE_DIR + '/')
const { createClient } = await import(require.resolve('xen-api'))
const info = JSON.parse(process.env.BIOXEN_TEST_XAPI)

const control = async body => {
  const r = await fetch(info.http + '/fake/control', { method: 'POST', body: JSON.stringify(body) })
  return r.json()
}
// npm's client parses replies with JSON.parse, which refuses xapi's bare Infinity.
await control({ op: 'config', infinity: false })

for (const url of [info.http, info.https]) {
  const xapi = createClient({
    url,
    allowUnauthorized: true,
    auth: { user: info.username, password: info.password },
    transport: 'json-rpc',
  })
  await xapi.connect()
  try {
    const vms = await xapi.call('VM.get_all_records')
    const templates = Object.entries(vms).filter(([, v]) => v.is_a_template)
    assert.ok(templates.length > 0, 'no templates')
    const [tref] = templates.find(([, v]) => v.name_label === 'Debian Bookworm 12')
    const vm = await xapi.callAsync('VM.clone', tref, 'xen-api-check')
    assert.match(vm, /^OpaqueRef:/)
    assert.equal(await xapi.call('VM.get_is_a_template', vm), true)
    await assert.rejects(xapi.call('VM.start', vm, false, false), e => e.code === 'VM_IS_TEMPLATE')
    await xapi.callAsync('VM.provision', vm)
    await xapi.callAsync('VM.start', vm, false, false)
    assert.equal(await xapi.call('VM.get_power_state', vm), 'Running')
    let ip
    const end = Date.now() + 20000
    while (ip === undefined && Date.now() < end) {
      const gm = await xapi.call('VM.get_guest_metrics', vm)
      if (gm !== 'OpaqueRef:NULL') {
        const nets = await xapi.call('VM_guest_metrics.get_networks', gm)
        ip = Object.entries(nets).find(([k, v]) => /\/ip$/.test(k) && !v.startsWith('169.254.'))?.[1]
      }
      if (ip === undefined) await new Promise(r => setTimeout(r, 50))
    }
    assert.match(ip ?? '', /^127\.0\.0\./, 'no guest IP')
    const disks = []
    for (const vbd of await xapi.call('VM.get_VBDs', vm)) {
      if ((await xapi.call('VBD.get_type', vbd)) === 'Disk') disks.push(await xapi.call('VBD.get_VDI', vbd))
    }
    await xapi.callAsync('VM.hard_shutdown', vm)
    await xapi.call('VM.destroy', vm)
    for (const d of disks) await xapi.call('VDI.destroy', d)
    await assert.rejects(xapi.call('VM.get_record', vm), e => e.code === 'HANDLE_INVALID')
    console.log(`xen-api (JSON-RPC) against ${url}: ok (guest at ${ip})`)
  } finally {
    await xapi.disconnect()
  }
}
await control({ op: 'config', infinity: true })
// The client logs out without waiting for the answer: give it a moment, bounded.
for (let i = 0; i < 100; i++) {
  const s = await control({ op: 'stats' })
  if (s.sessions === 0 && s.tasks === 0) break
  await new Promise(r => setTimeout(r, 20))
}
const left = await control({ op: 'leftovers' })
assert.deepEqual(Object.keys(left), [], JSON.stringify(left))
process.exit(0)
