'use strict'
const test = require('node:test')
const assert = require('node:assert/strict')
const { createAuth } = require('..')
const { createFakeWx } = require('./fake_wx')
const { startServer } = require('./server')

let server
test.before(async () => { server = await startServer() })
test.after(() => server.stop())

function setup(user) {
  const wx = createFakeWx(server.url, user)
  const auth = createAuth({ baseUrl: server.url + '/', wx })
  return { wx, auth }
}

const me = (auth) => auth.request({ url: server.url + '/me', method: 'GET' })

async function simCalls() {
  return (await fetch(server.url + '/_sim/calls')).json()
}

test('many concurrent requests at launch make one wx.login and one POST /login', async () => {
  const { wx, auth } = setup('launch')
  const results = await Promise.all(Array.from({ length: 20 }, () => me(auth)))
  for (const r of results) assert.equal(r.statusCode, 200)
  assert.equal(wx.stats.wxLogin, 1)
  assert.equal(wx.stats.loginPosts, 1)
  assert.equal(new Set(results.map((r) => r.data.data.id)).size, 1)
})

test('a token revoked mid-session causes one re-login and every request is replayed', async () => {
  const { wx, auth } = setup('revoked')
  const first = await me(auth)
  assert.equal(first.statusCode, 200)
  const token = await auth.getToken()
  // Revoked on the server (another device logged out, an admin revoked it...).
  const r = await fetch(server.url + '/logout', { method: 'POST', headers: { Authorization: 'Bearer ' + token } })
  assert.equal(r.status, 200)
  const results = await Promise.all(Array.from({ length: 10 }, () => me(auth)))
  for (const res of results) assert.equal(res.statusCode, 200, JSON.stringify(res.data))
  assert.equal(wx.stats.wxLogin, 2, 'one login at start, one shared re-login')
  assert.equal(wx.stats.loginPosts, 2)
  assert.notEqual(await auth.getToken(), token)
})

test('a failed login never re-sends the same code; the next attempt uses a fresh one', async () => {
  const { wx, auth } = setup('failing')
  await fetch(server.url + '/_sim/faults', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ api: '/sns/jscode2session', status: 500, times: 1 }),
  })
  await assert.rejects(auth.login(), (e) => e.code === 'wechat_unavailable' && e.statusCode === 503)
  assert.equal(wx.stats.loginPosts, 1)
  const token = await auth.login()
  assert.match(token, /^wxl_/)
  assert.equal(wx.stats.loginPosts, 2)
  assert.equal(new Set(wx.stats.codesSent).size, wx.stats.codesSent.length, 'no code sent twice')
})

test('a stale code is retried once with a fresh wx.login code', async () => {
  const { wx, auth } = setup('stale')
  await fetch(server.url + '/_sim/faults', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ api: '/sns/jscode2session', errcode: 40029, times: 1 }),
  })
  const token = await auth.login()
  assert.match(token, /^wxl_/)
  assert.equal(wx.stats.wxLogin, 2)
  assert.equal(new Set(wx.stats.codesSent).size, 2)
})

test('logout revokes the token on the server and clears it locally', async () => {
  const { wx, auth } = setup('leaver')
  await me(auth)
  const token = await auth.getToken()
  await auth.logout()
  assert.equal(wx.getStorageSync('wxlogin_token'), '')
  const r = await fetch(server.url + '/me', { headers: { Authorization: 'Bearer ' + token } })
  assert.equal(r.status, 401)
})

test('helpers: me, phone, decrypt, checkSession; errors carry the server code', async () => {
  const { auth } = setup('helper')
  const user = await auth.me()
  assert.ok(user.openid.startsWith('o'))
  const pc = await (await fetch(server.url + '/_sim/phone_codes', {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ phone: '13600000000' }),
  })).json()
  const phone = await auth.phone(pc.code)
  assert.equal(phone.purePhoneNumber, '13600000000')
  assert.equal((await auth.me()).phone, '13600000000')
  const sealed = await (await fetch(server.url + '/_sim/encrypt', {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user: 'helper', data: { step: 42 } }),
  })).json()
  const opened = await auth.decrypt(sealed.encryptedData, sealed.iv)
  assert.equal(opened.step, 42)
  assert.deepEqual(await auth.checkSession(), { valid: true })
  await assert.rejects(auth.phone('used-or-bogus'), (e) => e.code === 'invalid_phone_code' && e.statusCode === 400)
  const calls = await simCalls()
  assert.ok(calls['/wxa/business/getuserphonenumber'] >= 2)
})

test('the account: profile, avatar by wx.uploadFile, sessions, export, logout everywhere, deletion', async () => {
  const fs = require('node:fs')
  const os = require('node:os')
  const path = require('node:path')
  const { wx, auth } = setup('account')
  const other = setup('account')
  const user = await auth.updateProfile({ nickname: ' 小账 ' })
  assert.equal(user.nickname, '小账')
  await assert.rejects(auth.updateProfile({ nickname: '微信用户' }), (e) => e.code === 'placeholder_nickname')

  // chooseAvatar hands a temp file path; uploadFile sends it as multipart.
  const png = Buffer.from('89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000a49444154789c63000100000500010d0a2db40000000049454e44ae426082', 'hex')
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'avatar-')), 'tmp.png')
  fs.writeFileSync(file, png)
  const { avatar_url } = await auth.uploadAvatar(file)
  assert.match(avatar_url, /^avatars\/[0-9a-f]{64}\.png$/)
  const served = await fetch(server.url + '/' + avatar_url)
  assert.equal(served.status, 200)
  assert.equal((await auth.me()).avatar_url, avatar_url)

  // Two devices: each sees both sessions; ending the other one logs it out there.
  await other.auth.login()
  const sessions = await auth.sessions()
  assert.equal(sessions.length, 2)
  const mine = sessions.find((s) => s.current)
  const theirs = sessions.find((s) => !s.current)
  assert.ok(mine && theirs)
  await auth.endSession(theirs.id)
  const r = await fetch(server.url + '/me', { headers: { Authorization: 'Bearer ' + (await other.auth.getToken()) } })
  assert.equal(r.status, 401)

  const exported = await auth.exportData()
  assert.equal(exported.user.nickname, '小账')
  assert.ok(exported.events.some((e) => e.type === 'profile_updated'))

  await auth.logoutAll()
  assert.equal(wx.getStorageSync('wxlogin_token'), '')
  await auth.login()
  await auth.deleteAccount()
  assert.equal(wx.getStorageSync('wxlogin_token'), '')
  const again = await auth.me()
  assert.equal(again.nickname, null, 'a new login after deletion is a new user')
})
