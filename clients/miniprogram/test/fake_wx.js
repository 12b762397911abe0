// A fake `wx` for Node: wx.login asks the simulator for a code, wx.request does real HTTP,
// storage is a Map. It counts what the SDK does so tests can assert on it.
'use strict'

// `sim` names the simulated app a code is for (`{platform, appid}`); none: the only app.
function createFakeWx(serverUrl, user, sim = {}) {
  const storage = new Map()
  const stats = { wxLogin: 0, loginPosts: 0, codesSent: [] }
  const wx = {
    stats,
    // On Douyin (tt.login) the reply also has the device's anonymousCode, and `isLogin`;
    // `sim.signed_in: false` plays a device not signed in to Douyin (no code then).
    login({ success, fail, force }) {
      stats.wxLogin++
      stats.force = force
      fetch(serverUrl + '/_sim/codes', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ user, ...sim }),
      })
        .then((r) => r.json())
        .then((v) => success(sim.platform === 'douyin'
          ? { code: v.code || '', anonymousCode: v.anonymous_code, isLogin: !!v.code, errMsg: 'login:ok' }
          : { code: v.code, errMsg: 'login:ok' }), (e) => fail({ errMsg: String(e) }))
    },
    request({ url, method = 'GET', data, header = {}, success, fail }) {
      if (url.endsWith('/login') && method === 'POST') {
        stats.loginPosts++
        stats.codesSent.push(data && data.code)
        stats.lastLoginBody = data
      }
      const hasBody = method !== 'GET' && method !== 'HEAD'
      fetch(url, { method, headers: header, body: hasBody ? JSON.stringify(data || {}) : undefined })
        .then(async (r) => {
          const text = await r.text()
          let body
          try { body = JSON.parse(text) } catch { body = text }
          success({ statusCode: r.status, data: body, header: Object.fromEntries(r.headers) })
        }, (e) => fail({ errMsg: 'request:fail ' + e.message }))
    },
    // wx.uploadFile: a multipart POST of the file at `filePath` under `name`; the body comes
    // back as text, as in the mini program runtime.
    uploadFile({ url, filePath, name, header = {}, formData = {}, success, fail }) {
      const form = new FormData()
      for (const [k, v] of Object.entries(formData)) form.append(k, v)
      const bytes = require('node:fs').readFileSync(filePath)
      form.append(name, new Blob([bytes]), require('node:path').basename(filePath))
      fetch(url, { method: 'POST', headers: header, body: form })
        .then(async (r) => success({ statusCode: r.status, data: await r.text() }),
          (e) => fail({ errMsg: 'uploadFile:fail ' + e.message }))
    },
    getStorageSync: (k) => storage.get(k) || '',
    setStorageSync: (k, v) => storage.set(k, v),
    removeStorageSync: (k) => storage.delete(k),
  }
  return wx
}

/**
 * A fake Alipay `my` on top of the fake `wx`: Alipay's own shapes — `getAuthCode` gives
 * `authCode`, `request` takes `headers` and answers `status`, storage takes `{key, data}`.
 */
function createFakeMy(serverUrl, user, sim = {}) {
  const wx = createFakeWx(serverUrl, user, sim)
  const my = {
    stats: wx.stats,
    getAuthCode({ scopes, success, fail }) {
      my.stats.scopes = scopes
      wx.login({ success: (res) => success({ authCode: res.code }), fail })
    },
    request({ url, method, data, headers, success, fail }) {
      wx.request({
        url,
        method,
        data,
        header: headers,
        success: (res) => {
          const reply = { status: res.statusCode, data: res.data, headers: res.header }
          // Alipay's runtime calls `fail` for an HTTP error status, with the reply in it.
          if (res.statusCode >= 400) fail({ error: 19, errorMessage: 'http status error', ...reply })
          else success(reply)
        },
        fail,
      })
    },
    getStorageSync: ({ key }) => ({ data: wx.getStorageSync(key) || null }),
    setStorageSync: ({ key, data }) => wx.setStorageSync(key, data),
    removeStorageSync: ({ key }) => wx.removeStorageSync(key),
  }
  return my
}

module.exports = { createFakeWx, createFakeMy }
