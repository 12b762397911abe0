// Starts a real `wxlogin serve --dev` on a free port with its own SQLite file.
'use strict'
const { spawn } = require('node:child_process')
const fs = require('node:fs')
const net = require('node:net')
const os = require('node:os')
const path = require('node:path')

const ADMIN_TOKEN = 'sdk-test-admin-token-0123456789'

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    })
  })
}

// `env` adds to (or replaces) the server's environment.
async function startServer({ env = {} } = {}) {
  const bin = process.env.WXLOGIN_BIN || path.resolve(__dirname, '../../../target/debug/wxlogin')
  if (!fs.existsSync(bin)) throw new Error(`no wxlogin binary at ${bin}: run cargo build first (or set WXLOGIN_BIN)`)
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wxlogin-sdk-'))
  const port = await freePort()
  const child = spawn(bin, ['serve', '--dev'], {
    cwd: dir,
    stdio: 'ignore',
    env: {
      ...process.env,
      WXLOGIN_CONFIG: '/dev/null',
      WXLOGIN_LISTEN: `127.0.0.1:${port}`,
      WXLOGIN_DATABASE_URL: `sqlite://${dir}/db.sqlite`,
      WXLOGIN_ADMIN_TOKEN: ADMIN_TOKEN,
      WXLOGIN_RATE_LIMIT_LOGIN: 'off',
      // Every phone() asks WeChat, so a bad code is refused (reuse has its own e2e test).
      WXLOGIN_PHONE_REUSE: 'off',
      RUST_LOG: 'warn',
      ...env,
    },
  })
  const url = `http://127.0.0.1:${port}`
  for (let i = 0; i < 200; i++) {
    try {
      if ((await fetch(url + '/healthz')).ok) break
    } catch {}
    await new Promise((r) => setTimeout(r, 50))
  }
  return {
    url,
    adminToken: env.WXLOGIN_ADMIN_TOKEN || ADMIN_TOKEN,
    stop() {
      child.kill('SIGTERM')
      fs.rmSync(dir, { recursive: true, force: true })
    },
  }
}

module.exports = { startServer }
