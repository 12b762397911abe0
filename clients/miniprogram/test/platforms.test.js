// The same createAuth on every platform's runtime: a fake of each global (qq, tt, swan, ks) against
// a real `wxlogin serve --dev` serving one app per platform, with the built-in simulator.
'use strict'
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { createAuth } = require('..')
const { createFakeWx } = require('./fake_wx')
const { startServer } = require('./server')

const APPS = [
  { platform: 'qq', global: 'qq', appid: '1109000001', loginWith: 'login' },
  { platform: 'douyin', global: 'tt', appid: 'tt0123456789abcdef', loginWith: 'login' },
  { platform: 'baidu', global: 'swan', appid: 'baiduappkey0001', loginWith: 'getLoginCode' },
  { platform: 'kuaishou', global: 'ks', appid: 'ks671234567890', loginWith: 'login' },
]

let server
let dir
test.before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wxlogin-sdk-platforms-'))
  const toml = APPS.map((a) => `[[apps]]\nplatform = "${a.platform}"\nappid = "${a.appid}"\nsecret = "${a.platform}-secret"\n`).join('\n')
  fs.writeFileSync(path.join(dir, 'wxlogin.toml'), toml)
  server = await startServer({ env: { WXLOGIN_CONFIG: path.join(dir, 'wxlogin.toml') } })
})
test.after(() => {
  server.stop()
  fs.rmSync(dir, { recursive: true, force: true })
})

/** A fake of one platform's global: its login method asks the simulator for that platform's code. */
function fakeGlobal(app, user) {
  const fake = createFakeWx(server.url, user, { platform: app.platform, appid: app.appid })
  if (app.loginWith !== 'login') {
    fake[app.loginWith] = fake.login
    delete fake.login
  }
  return fake
}

for (const app of APPS) {
  test(`on ${app.platform}, the global ${app.global} is found and a login is a ${app.platform} identity`, async () => {
    const fake = fakeGlobal(app, 'sdk-' + app.platform)
    globalThis[app.global] = fake
    try {
      const auth = createAuth({ baseUrl: server.url + '/', appid: app.appid })
      assert.equal(auth.platform, app.platform)
      const me = await auth.me()
      assert.equal(me.identities.length, 1)
      assert.equal(me.identities[0].platform, app.platform)
      assert.equal(me.identities[0].appid, app.appid)
      assert.equal(fake.stats.wxLogin, 1)
      assert.equal(fake.stats.loginPosts, 1)
    } finally {
      delete globalThis[app.global]
    }
  })
}

test('a platform named with its API object needs no global', async () => {
  const app = APPS[1]
  const auth = createAuth({ baseUrl: server.url + '/', appid: app.appid, platform: 'douyin', api: fakeGlobal(app, 'named') })
  assert.equal(auth.platform, 'douyin')
  assert.match(await auth.login(), /^wxl_/)
})

test('QQ, which also defines wx, is found by its own name first', () => {
  globalThis.qq = fakeGlobal(APPS[0], 'both')
  globalThis.wx = createFakeWx(server.url, 'both')
  try {
    assert.equal(createAuth({ baseUrl: server.url + '/' }).platform, 'qq')
  } finally {
    delete globalThis.qq
    delete globalThis.wx
  }
})

test('outside any runtime, createAuth says what to pass', () => {
  assert.throws(() => createAuth({ baseUrl: server.url + '/' }), /no mini-program runtime found/)
})
