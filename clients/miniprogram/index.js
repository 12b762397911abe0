/**
 * wxlogin client for mini programs: WeChat (`wx`), QQ (`qq`), Douyin (`tt`), Baidu (`swan`),
 * Kuaishou (`ks`) and Alipay (`my`), the platform found from the global the runtime defines. Plain CommonJS, no build
 * step, no dependencies.
 *
 *   const { createAuth } = require('wxlogin-miniprogram')
 *   const auth = createAuth({ baseUrl: 'https://api.example.com/auth/' })
 *   auth.request({ url: 'https://api.example.com/orders', method: 'GET' }).then(res => ...)
 *
 * What it gets right, so every page does not have to:
 * - single-flight login: however many callers need a token at once, one wx.login + one POST /login;
 * - a code is never sent twice: a failed login gets a fresh wx.login code next time;
 * - on 401 the token is dropped, one re-login is shared by every request that got 401, and each
 *   of those requests is replayed once;
 * - errors carry the server's machine-readable `code` (see docs/errors.md).
 */
'use strict'

var DEFAULT_STORAGE_KEY = 'wxlogin_token'

function WxLoginError(code, message, statusCode) {
  var e = new Error(message || code)
  e.name = 'WxLoginError'
  e.code = code
  e.statusCode = statusCode
  return e
}

/**
 * Each platform's global, in the order they are looked for: a super-app that also defines `wx` for
 * compatibility (QQ does) is found by its own name first. `loginWith` is the method that yields a
 * login code.
 */
var PLATFORMS = [
  { platform: 'qq', global: 'qq', loginWith: 'login' },
  { platform: 'douyin', global: 'tt', loginWith: 'login' },
  { platform: 'baidu', global: 'swan', loginWith: 'getLoginCode' },
  { platform: 'kuaishou', global: 'ks', loginWith: 'login' },
  { platform: 'alipay', global: 'my', loginWith: 'getAuthCode' },
  { platform: 'weixin', global: 'wx', loginWith: 'login' },
]

/**
 * Alipay's `my` in the shape the rest of this file speaks (wx's): `my.getAuthCode` yields the
 * code as `authCode`, `my.request` takes `headers` and answers `status`/`headers`, and its
 * storage calls take and give `{key, data}`.
 */
function alipayApi(my) {
  return {
    login: function (opts) {
      my.getAuthCode({
        scopes: 'auth_base',
        success: function (res) { opts.success({ code: res && res.authCode }) },
        fail: opts.fail,
      })
    },
    request: function (opts) {
      my.request({
        url: opts.url,
        method: opts.method,
        data: opts.data,
        headers: opts.header,
        dataType: 'json',
        success: function (res) {
          opts.success({ statusCode: res.status, data: res.data, header: res.headers })
        },
        fail: function (err) {
          // my.request fails on any status it does not like; a reply is still a reply.
          if (err && err.status) opts.success({ statusCode: err.status, data: err.data, header: err.headers })
          else opts.fail(err)
        },
      })
    },
    uploadFile: function (opts) {
      my.uploadFile({
        url: opts.url,
        filePath: opts.filePath,
        fileName: opts.name,
        fileType: 'image',
        header: opts.header,
        formData: opts.formData,
        success: function (res) { opts.success({ statusCode: res.statusCode, data: res.data }) },
        fail: opts.fail,
      })
    },
    getStorageSync: function (key) {
      var res = my.getStorageSync({ key: key })
      return res && res.data
    },
    setStorageSync: function (key, data) { my.setStorageSync({ key: key, data: data }) },
    removeStorageSync: function (key) { my.removeStorageSync({ key: key }) },
  }
}

function globalNamed(name) {
  /* global globalThis */
  var root = typeof globalThis !== 'undefined' ? globalThis : {}
  return root[name] || null
}

/** `{platform, api, loginWith}`: the named platform, or the first whose global exists. */
function findPlatform(options) {
  var named = options.platform
  for (var i = 0; i < PLATFORMS.length; i++) {
    var p = PLATFORMS[i]
    if (named && named !== p.platform) continue
    var api = (named && (options.api || options.wx)) || globalNamed(p.global)
    if (api) {
      if (p.platform === 'alipay') return { platform: p.platform, api: alipayApi(api), loginWith: 'login' }
      // Baidu's older runtimes have only swan.login.
      var loginWith = typeof api[p.loginWith] === 'function' ? p.loginWith : 'login'
      return { platform: p.platform, api: api, loginWith: loginWith }
    }
  }
  return null
}

function joinUrl(base, path) {
  return base.replace(/\/+$/, '') + '/' + path.replace(/^\/+/, '')
}

function createAuth(options) {
  options = options || {}
  if (!options.baseUrl) throw new Error('createAuth: baseUrl is required')
  var found = options.platform
    ? findPlatform(options)
    : options.api || options.wx
      ? { platform: 'weixin', api: options.api || options.wx, loginWith: 'login' }
      : findPlatform(options)
  if (!found) {
    throw new Error(
      'createAuth: no mini-program runtime found (wx, qq, tt, swan, ks or my); ' +
        'outside one, pass options.api and options.platform'
    )
  }
  var wxApi = found.api
  var baseUrl = options.baseUrl
  var storageKey = options.storageKey || DEFAULT_STORAGE_KEY
  var appid = options.appid
  var inflight = null

  function getStored() {
    try {
      return wxApi.getStorageSync(storageKey) || ''
    } catch (e) {
      return ''
    }
  }

  function setStored(token) {
    if (token) wxApi.setStorageSync(storageKey, token)
    else wxApi.removeStorageSync(storageKey)
  }

  function wxRequest(opts) {
    return new Promise(function (resolve, reject) {
      wxApi.request(Object.assign({}, opts, {
        success: resolve,
        fail: function (err) {
          reject(WxLoginError('network', (err && err.errMsg) || 'request failed', 0))
        },
      }))
    })
  }

  /**
   * The platform's login call (wx.login, qq.login, tt.login, swan.getLoginCode, ks.login,
   * my.getAuthCode): `{code, anonymousCode}`. On Douyin, tt.login also gives an anonymousCode
   * for the device; with `anonymous: true` it is called with `force: false` (no sign-in prompt)
   * and a user not signed in to Douyin logs in with the anonymousCode alone.
   */
  function wxLoginCode() {
    var douyin = found.platform === 'douyin'
    return new Promise(function (resolve, reject) {
      var opts = {
        success: function (res) {
          var anonymousCode = (douyin && res && res.anonymousCode) || ''
          if ((res && res.code) || (anonymousCode && options.anonymous)) {
            resolve({ code: (res && res.code) || '', anonymousCode: anonymousCode })
          } else {
            reject(WxLoginError('wx_login_failed', found.loginWith + ' returned no code', 0))
          }
        },
        fail: function (err) {
          reject(WxLoginError('wx_login_failed', (err && err.errMsg) || found.loginWith + ' failed', 0))
        },
      }
      if (douyin && options.anonymous) opts.force = false
      wxApi[found.loginWith](opts)
    })
  }

  function api(method, path, data, token) {
    var header = { 'content-type': 'application/json' }
    if (token) header.Authorization = 'Bearer ' + token
    return wxRequest({ url: joinUrl(baseUrl, path), method: method, data: data || {}, header: header })
  }

  function unwrap(res) {
    var body = res.data || {}
    if (res.statusCode === 200 && body.status === 0) return body.data
    throw WxLoginError(body.error || 'http_' + res.statusCode, body.msg, res.statusCode)
  }

  /** One attempt: a fresh code, one POST. Codes are never reused. */
  function loginOnce() {
    var previous = getStored()
    return wxLoginCode().then(function (codes) {
      var data = {}
      if (codes.code) data.code = codes.code
      // Beside a code, it carries the device's guest account over to the signed-in user.
      if (codes.anonymousCode) data.anonymous_code = codes.anonymousCode
      if (appid) data.appid = appid
      return api('POST', 'login', data, previous)
    }).then(unwrap).then(function (data) {
      setStored(data.token)
      return data.token
    })
  }

  /** Logs in; concurrent callers share one login. A stale code is retried once with a new one. */
  function login() {
    if (!inflight) {
      inflight = loginOnce()
        .catch(function (e) {
          if (e.code === 'invalid_code' || e.code === 'code_used') return loginOnce()
          throw e
        })
        .then(function (token) {
          inflight = null
          return token
        }, function (e) {
          inflight = null
          throw e
        })
    }
    return inflight
  }

  function getToken() {
    var token = getStored()
    return token && !inflight ? Promise.resolve(token) : login()
  }

  /**
   * wx.request with the token attached. On 401: drop the token (if it is still the one that
   * failed), log in once, replay this request once.
   */
  function request(opts) {
    function send(token) {
      var header = Object.assign({}, opts.header || {}, { Authorization: 'Bearer ' + token })
      return wxRequest(Object.assign({}, opts, { header: header }))
    }
    return getToken().then(function (token) {
      return send(token).then(function (res) {
        if (res.statusCode !== 401) return res
        if (getStored() === token) setStored('')
        return getToken().then(send)
      })
    })
  }

  /** A call to wxlogin itself, with the same 401 handling; resolves with `data`. */
  function call(method, path, data) {
    return request({ url: joinUrl(baseUrl, path), method: method, data: data || {}, header: { 'content-type': 'application/json' } })
      .then(unwrap)
  }

  /** wx.uploadFile of the avatar (multipart POST), with the same 401 handling. */
  function upload(filePath) {
    function send(token) {
      return new Promise(function (resolve, reject) {
        wxApi.uploadFile({
          url: joinUrl(baseUrl, 'me/avatar'),
          filePath: filePath,
          name: 'avatar',
          header: { Authorization: 'Bearer ' + token },
          success: function (res) {
            // uploadFile hands the body over as text.
            var data = res.data
            try { data = typeof data === 'string' ? JSON.parse(data) : data } catch (e) { data = {} }
            resolve({ statusCode: res.statusCode, data: data })
          },
          fail: function (err) {
            reject(WxLoginError('network', (err && err.errMsg) || 'upload failed', 0))
          },
        })
      })
    }
    return getToken().then(function (token) {
      return send(token).then(function (res) {
        if (res.statusCode !== 401) return res
        if (getStored() === token) setStored('')
        return getToken().then(send)
      })
    }).then(unwrap)
  }

  /** Ends the session(s) on the server and forgets the token here. */
  function endAndForget(method, path, data) {
    var token = getStored()
    setStored('')
    if (!token) return Promise.resolve()
    return api(method, path, data, token).then(unwrap).then(function () {})
  }

  return {
    /** The platform in use: 'weixin', 'qq', 'douyin', 'baidu' or 'kuaishou'. */
    platform: found.platform,
    login: login,
    getToken: getToken,
    request: request,
    me: function () { return call('GET', 'me') },
    /**
     * `code` is the getPhoneNumber button's `e.detail.code`. Do not call wx.login around it.
     * A number bound recently is answered from the server's store; `{refresh: true}` asks WeChat.
     * On Alipay, pass my.getPhoneNumber's `res.response` string as it is.
     */
    phone: function (code, opts) {
      if (found.platform === 'alipay') return call('POST', 'phone', { response: code })
      return call('POST', 'phone', { code: code, refresh: !!(opts && opts.refresh) })
    },
    decrypt: function (encryptedData, iv) { return call('POST', 'decrypt', { encryptedData: encryptedData, iv: iv }) },
    /** `{valid}`: false means log in again before asking the user for encrypted data. */
    checkSession: function () { return call('GET', 'session/check') },
    logout: function () {
      var token = getStored()
      setStored('')
      if (!token) return Promise.resolve()
      return api('POST', 'logout', {}, token).then(function () {})
    },
    /** `{nickname}` from `<input type="nickname">`; resolves with the updated user. */
    updateProfile: function (profile) { return call('PATCH', 'me', { nickname: profile && profile.nickname }) },
    /** `filePath` is `e.detail.avatarUrl` of `<button open-type="chooseAvatar">`; resolves `{avatar_url}`. */
    uploadAvatar: function (filePath) { return upload(filePath) },
    /** The user's sessions on every device; `current` marks this one. */
    sessions: function () { return call('GET', 'me/sessions').then(function (d) { return d.sessions }) },
    /** Ends one session (from `sessions()`), e.g. a lost phone's. */
    endSession: function (id) { return call('DELETE', 'me/sessions/' + encodeURIComponent(id)).then(function () {}) },
    /** Logs out on every device. */
    logoutAll: function () { return endAndForget('POST', 'logout', { all: true }) },
    /** Deletes the account (注销): every session ends, personal data is erased. */
    deleteAccount: function () { return endAndForget('DELETE', 'me') },
    /** Everything stored about the user, as JSON (个人信息导出). */
    exportData: function () { return call('GET', 'me/export') },
  }
}

module.exports = { createAuth: createAuth, WxLoginError: WxLoginError }
