// The same createAuth on every platform's runtime: a fake of each global (qq, tt, swan, ks) against
// a real `wxlogin serve --dev` serving one app per platform, with the built-in simulator.
'use strict'
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { createAuth } = require('..')
const crypto = require('node:crypto')
const { createFakeWx, createFakeMy } = require('./fake_wx')
const { startServer } = require('./server')

const APPS = [
  { platform: 'qq', global: 'qq', appid: '1109000001', loginWith: 'login' },
  { platform: 'douyin', global: 'tt', appid: 'tt0123456789abcdef', loginWith: 'login' },
  { platform: 'baidu', global: 'swan', appid: 'baiduappkey0001', loginWith: 'getLoginCode' },
  { platform: 'kuaishou', global: 'ks', appid: 'ks671234567890', loginWith: 'login' },
]

const ROOT = path.resolve(__dirname, '../../..')
const ALIPAY_APPID = '2021000000000001'
const ALIPAY_AES_KEY = 'AAECAwQFBgcICQoLDA0ODw=='

/** The simulated Alipay's public key, from its (public, test) key pair in src/simulator/. */
function simulatedAlipayPublicKey() {
  const pem = fs.readFileSync(path.join(ROOT, 'src/simulator/alipay_key.pem'), 'utf8')
  return crypto.createPublicKey(pem).export({ type: 'spki', format: 'der' }).toString('base64')
}

let server
let dir
test.before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wxlogin-sdk-platforms-'))
  // Douyin's phone numbers are opened with the app's private key (its public half is Douyin's).
  const douyinKey = fs.readFileSync(path.join(ROOT, 'tests/fixtures/alipay/app_private_pkcs8.pem'), 'utf8')
  const toml = APPS.map((a) => `[[apps]]\nplatform = "${a.platform}"\nappid = "${a.appid}"\nsecret = "${a.platform}-secret"\n` +
    (a.platform === 'douyin' ? `douyin_private_key = '''${douyinKey}'''\n` : '')).join('\n') +
    // Alipay's "secret" is the app's RSA private key; the simulated Alipay signs with its own.
    `\n[[apps]]\nplatform = "alipay"\nappid = "${ALIPAY_APPID}"\nsecret = '''${fs.readFileSync(path.join(ROOT, 'tests/fixtures/alipay/app_private_pkcs8.pem'), 'utf8')}'''\n` +
    `alipay_public_key = "${simulatedAlipayPublicKey()}"\nalipay_aes_key = "${ALIPAY_AES_KEY}"\n`
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

test('on Alipay, the global my is found: my.getAuthCode, my.request and its storage', async () => {
  const my = createFakeMy(server.url, 'sdk-alipay', { platform: 'alipay', appid: ALIPAY_APPID })
  globalThis.my = my
  try {
    const auth = createAuth({ baseUrl: server.url + '/', appid: ALIPAY_APPID })
    assert.equal(auth.platform, 'alipay')
    const me = await auth.me()
    assert.equal(me.identities[0].platform, 'alipay')
    assert.equal(me.identities[0].appid, ALIPAY_APPID)
    assert.equal(my.stats.scopes, 'auth_base', 'a silent authorization')
    assert.equal(my.stats.loginPosts, 1)
    // The token is kept in my's storage and reused: no second login.
    assert.equal((await auth.me()).id, me.id)
    assert.equal(my.stats.loginPosts, 1)
    // A token revoked on the server (an HTTP 401, which my.request hands to `fail`) means one
    // re-login and the request replayed.
    const revoked = await fetch(`${server.url}/admin/users/${me.id}/sessions`, {
      method: 'DELETE',
      headers: { Authorization: 'Bearer ' + server.adminToken },
    })
    assert.equal(revoked.status, 200)
    assert.equal((await auth.me()).id, me.id)
    assert.equal(my.stats.loginPosts, 2)
    // my.getPhoneNumber's res.response, as it is: verified and opened on the server.
    const sim = await fetch(server.url + '/_sim/phone_codes', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ appid: ALIPAY_APPID, phone: '15900004444' }),
    }).then((r) => r.json())
    const phone = await auth.phone(sim.response)
    assert.equal(phone.phoneNumber, '15900004444')
    assert.equal((await auth.me()).phone, '15900004444')
  } finally {
    delete globalThis.my
  }
})

test('a platform named with its API object needs no global', async () => {
  const app = APPS[1]
  const auth = createAuth({ baseUrl: server.url + '/', appid: app.appid, platform: 'douyin', api: fakeGlobal(app, 'named') })
  assert.equal(auth.platform, 'douyin')
  assert.match(await auth.login(), /^wxl_/)
  // The getPhoneNumber button's code, as on WeChat: Douyin's answer is opened on the server.
  const sim = await fetch(server.url + '/_sim/phone_codes', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ appid: app.appid, phone: '13900006666' }),
  }).then((r) => r.json())
  const phone = await auth.phone(sim.code)
  assert.equal(phone.purePhoneNumber, '13900006666')
})

test('on Douyin, a device not signed in logs in as a guest with anonymous: true, and keeps it on signing in', async () => {
  const app = APPS[1]
  const sim = { platform: 'douyin', appid: app.appid, signed_in: false }
  const tt = createFakeWx(server.url, 'sdk-device-1', sim)
  // Without the option, no code is no login.
  const strict = createAuth({ baseUrl: server.url + '/', appid: app.appid, platform: 'douyin', api: tt })
  await assert.rejects(strict.login(), (e) => e.code === 'wx_login_failed')
  const auth = createAuth({ baseUrl: server.url + '/', appid: app.appid, platform: 'douyin', api: tt, anonymous: true })
  const guest = await auth.me()
  assert.equal(tt.stats.force, false, 'no sign-in prompt')
  assert.equal(tt.stats.lastLoginBody.code, undefined)
  assert.match(guest.identities[0].openid, /^anon:/)
  // Signed in to Douyin now, on the same device: both codes go, and the guest account is kept.
  sim.signed_in = true
  sim.device = 'sdk-device-1'
  await auth.login()
  assert.ok(tt.stats.lastLoginBody.code && tt.stats.lastLoginBody.anonymous_code)
  const me = await auth.me()
  assert.equal(me.id, guest.id)
  assert.equal(me.identities.length, 1)
  assert.doesNotMatch(me.identities[0].openid, /^anon:/)
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
