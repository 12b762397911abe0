// The wxlogin admin console: one page, no external assets, no inline script (served with a strict
// Content-Security-Policy). The admin token lives in sessionStorage (this tab only) and travels
// in the Authorization header; it is never put in a URL. Everything a user or client wrote
// (nicknames, user agents, error text) is shown with textContent, never parsed as HTML.
'use strict'

const TOKEN_KEY = 'wxlogin.admin.token'
const LANG_KEY = 'wxlogin.admin.lang'

const TEXT = {
  en: {
    title: 'admin console', nav_users: 'Users', nav_webhooks: 'Webhooks', nav_dashboard: 'Dashboard',
    sign_in: 'Sign in', sign_out: 'Sign out',
    sign_in_hint: 'The admin token (WXLOGIN_ADMIN_TOKEN). It is kept in this tab only (sessionStorage) and sent as a header.',
    user_id: 'user id', phone: 'phone', find: 'Find', status: 'status', nickname: 'nickname', last_login: 'last login',
    user: 'User', ban_reason: 'ban reason', ban: 'Ban', unban: 'Unban', merge_from: 'user id to merge in',
    merge: 'Merge into this user', revoke_all: 'Revoke all sessions', delete: 'Delete', identities: 'Identities',
    platform: 'platform', created: 'created', sessions: 'Sessions', last_seen: 'last seen', events: 'Events',
    time: 'time', type: 'type', actor: 'by', detail: 'detail', event: 'event', state: 'state', attempts: 'attempts',
    next_try: 'next try', last_error: 'last error', revoke: 'Revoke', redrive: 'Re-drive', refresh: 'Refresh',
    dashboard_scope: 'The last hour, as seen by the instance serving this page.',
    chart_logins: 'Logins per minute', chart_errors: 'Login errors per minute, by code',
    chart_latency: 'WeChat call latency (ms): p50 and p99',
    none_found: 'No user matches.', no_rows: 'Nothing here.', wrong_token: 'The admin token was refused.',
    confirm_ban: 'Ban user {id}? Every session ends now and later logins are refused.',
    confirm_unban: 'Lift the ban on user {id}?',
    confirm_merge: 'Merge user {from} into user {id}? User {from} is deleted.',
    confirm_delete: 'Delete user {id}? This erases their identities, phone and profile and cannot be undone.',
    confirm_revoke_all: 'End every session of user {id}?', confirm_revoke: 'End session {id}?',
    confirm_redrive: 'Deliver webhook {id} again?',
    done_ban: 'User {id} is banned.', done_unban: 'User {id} is no longer banned.', done_merge: 'User {from} was merged into user {id}.',
    done_delete: 'User {id} was deleted.', done_revoke: '{n} session(s) ended.', done_redrive: 'Webhook {id} is queued again.',
    webhooks_off: 'Webhooks are off (WXLOGIN_WEBHOOK_URL is not set).',
    webhooks_on: 'Sending to {url}: {pending} waiting, {dead} dead, oldest waiting since {oldest}.',
    pending: 'waiting', dead: 'dead', deleted_at: 'deleted', lang: '中文',
  },
  zh: {
    title: '管理控制台', nav_users: '用户', nav_webhooks: 'Webhook', nav_dashboard: '仪表盘',
    sign_in: '登录', sign_out: '退出',
    sign_in_hint: '管理令牌（WXLOGIN_ADMIN_TOKEN）。只保存在当前标签页（sessionStorage），以请求头发送。',
    user_id: '用户 ID', phone: '手机号', find: '查找', status: '状态', nickname: '昵称', last_login: '最近登录',
    user: '用户', ban_reason: '封禁原因', ban: '封禁', unban: '解封', merge_from: '要并入的用户 ID',
    merge: '合并到此用户', revoke_all: '注销全部会话', delete: '删除', identities: '身份',
    platform: '平台', created: '创建时间', sessions: '会话', last_seen: '最近活动', events: '事件',
    time: '时间', type: '类型', actor: '操作者', detail: '详情', event: '事件', state: '状态', attempts: '尝试次数',
    next_try: '下次尝试', last_error: '最近错误', revoke: '注销', redrive: '重新投递', refresh: '刷新',
    dashboard_scope: '最近一小时，来自提供此页面的实例。',
    chart_logins: '每分钟登录数', chart_errors: '每分钟登录错误（按错误码）',
    chart_latency: '微信接口延迟（毫秒）：p50 与 p99',
    none_found: '没有匹配的用户。', no_rows: '暂无数据。', wrong_token: '管理令牌被拒绝。',
    confirm_ban: '封禁用户 {id}？其全部会话立即失效，之后的登录会被拒绝。',
    confirm_unban: '解除用户 {id} 的封禁？',
    confirm_merge: '把用户 {from} 合并到用户 {id}？用户 {from} 将被删除。',
    confirm_delete: '删除用户 {id}？其身份、手机号和资料将被清除，且无法恢复。',
    confirm_revoke_all: '注销用户 {id} 的全部会话？', confirm_revoke: '注销会话 {id}？',
    confirm_redrive: '重新投递 Webhook {id}？',
    done_ban: '用户 {id} 已封禁。', done_unban: '用户 {id} 已解封。', done_merge: '用户 {from} 已合并到用户 {id}。',
    done_delete: '用户 {id} 已删除。', done_revoke: '已注销 {n} 个会话。', done_redrive: 'Webhook {id} 已重新排队。',
    webhooks_off: 'Webhook 未开启（未设置 WXLOGIN_WEBHOOK_URL）。',
    webhooks_on: '投递到 {url}：等待 {pending} 条，失败 {dead} 条，最早等待自 {oldest}。',
    pending: '等待中', dead: '已失败', deleted_at: '删除时间', lang: 'English',
  },
}

let lang = sessionStorage.getItem(LANG_KEY) || (navigator.language.startsWith('zh') ? 'zh' : 'en')
let refreshTimer = null

function t(key, vars) {
  let s = (TEXT[lang] && TEXT[lang][key]) || TEXT.en[key] || key
  for (const [k, v] of Object.entries(vars || {})) s = s.split('{' + k + '}').join(String(v))
  return s
}

function $(sel) { return document.querySelector(sel) }

function el(tag, text, attrs) {
  const e = document.createElement(tag)
  if (text !== undefined && text !== null) e.textContent = String(text)
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v)
  return e
}

function applyLanguage() {
  document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en'
  for (const e of document.querySelectorAll('[data-t]')) e.textContent = t(e.dataset.t)
  for (const e of document.querySelectorAll('[data-tp]')) e.placeholder = t(e.dataset.tp)
  $('#lang').textContent = t('lang')
}

function flash(message, isError) {
  const f = $('#flash')
  f.textContent = message
  f.className = isError ? 'error' : ''
  f.hidden = false
}

class ApiError extends Error {
  constructor(status, body) {
    super((body && (body.msg || body.error)) || 'HTTP ' + status)
    this.status = status
  }
}

// One admin API call, relative to this page (/admin/), with the token as a header.
async function api(method, path, body) {
  const headers = { authorization: 'Bearer ' + (sessionStorage.getItem(TOKEN_KEY) || '') }
  if (body !== undefined) headers['content-type'] = 'application/json'
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: 'no-store' })
  let json = null
  try { json = await res.json() } catch (_) { /* not JSON */ }
  if (res.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY)
    show('signin')
    flash(t('wrong_token'), true)
    throw new ApiError(401, json)
  }
  if (!res.ok) throw new ApiError(res.status, json)
  return json.data
}

function fmtTime(s) { return s ? s.replace('T', ' ').replace(/\.\d+Z$|Z$/, '') : '' }

function fillTable(table, rows, cells, onClick) {
  const body = table.querySelector('tbody')
  body.replaceChildren()
  if (rows.length === 0) {
    const tr = el('tr')
    tr.append(el('td', t('no_rows'), { colspan: String(table.querySelectorAll('th').length) }))
    body.append(tr)
    return
  }
  for (const row of rows) {
    const tr = el('tr')
    for (const c of cells(row)) {
      const td = el('td')
      if (c instanceof Node) td.append(c)
      else td.textContent = c === null || c === undefined ? '' : String(c)
      tr.append(td)
    }
    if (onClick) {
      tr.className = 'link'
      tr.addEventListener('click', () => onClick(row))
    }
    body.append(tr)
  }
}

function show(page) {
  for (const s of document.querySelectorAll('main > section')) s.hidden = s.id !== 'page-' + page
  const signedIn = page !== 'signin'
  $('#nav').hidden = !signedIn
  for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.getAttribute('href') === '#/' + page)
  if (refreshTimer) { clearInterval(refreshTimer); refreshTimer = null }
}

// ---- users ----

async function findUsers(by, value) {
  const q = new URLSearchParams({ [by]: value })
  const data = await api('GET', 'users?' + q.toString())
  fillTable($('#found'), data.users, (u) => [u.id, u.status, u.nickname, u.phone, fmtTime(u.last_login_at)],
    (u) => { location.hash = '#/users/' + u.id })
  if (data.users.length === 0) flash(t('none_found'), false)
}

async function showUser(id) {
  show('user')
  $('#page-user').dataset.id = id
  const [user, sessions, events] = await Promise.all([
    api('GET', 'users/' + id),
    api('GET', 'users/' + id + '/sessions'),
    api('GET', 'users/' + id + '/events?limit=100'),
  ])
  $('#user-id').textContent = '#' + user.id
  const badge = $('#user-status')
  badge.textContent = user.status
  badge.className = 'badge ' + user.status
  const dl = $('#user-fields')
  dl.replaceChildren()
  const fields = [['nickname', user.nickname], ['phone', user.phone], ['ban_reason', user.ban_reason],
    ['created', fmtTime(user.created_at)], ['last_login', fmtTime(user.last_login_at)],
    ['deleted_at', fmtTime(user.deleted_at)]]
  for (const [k, v] of fields) {
    if (v === undefined || v === null || v === '') continue
    dl.append(el('dt', t(k)), el('dd', v))
  }
  if (user.avatar_url) {
    const img = el('img', null, { src: user.avatar_url, width: '48', height: '48', alt: '' })
    const dd = el('dd')
    dd.append(img)
    dl.append(el('dt', 'avatar'), dd)
  }
  $('#ban').disabled = user.status !== 'active'
  $('#unban').disabled = user.status !== 'banned'
  for (const b of ['#merge', '#delete', '#revoke-all']) $(b).disabled = user.status === 'deleted'
  fillTable($('#identities'), user.identities || [], (i) => [i.platform, i.appid, i.openid, i.unionid])
  fillTable($('#sessions'), sessions.sessions, (s) => {
    const b = el('button', t('revoke'), { type: 'button', 'data-session': String(s.id) })
    b.addEventListener('click', () => act('confirm_revoke', { id: s.id }, () => api('DELETE', 'sessions/' + s.id), 'done_revoke', { n: 1 }))
    return [s.id, s.appid, fmtTime(s.created_at), fmtTime(s.last_seen_at), s.ip, s.user_agent, b]
  })
  fillTable($('#events'), events.events, (e) => [e.id, fmtTime(e.time), e.type, e.actor, e.appid, e.ip,
    e.detail ? JSON.stringify(e.detail) : ''])
}

// Asks first; on yes runs `call`, says it is done, and shows the user again.
async function act(question, vars, call, done, doneVars) {
  if (!window.confirm(t(question, vars))) return
  try {
    const result = await call()
    flash(t(done, { ...vars, ...(doneVars || {}), ...(result && result.revoked !== undefined ? { n: result.revoked } : {}) }))
    await route()
  } catch (e) {
    if (e.status !== 401) flash(e.message, true)
  }
}

function userId() { return $('#page-user').dataset.id }

// ---- webhooks ----

async function showWebhooks() {
  show('webhooks')
  const data = await api('GET', 'webhooks?limit=200')
  $('#webhook-summary').textContent = data.enabled
    ? t('webhooks_on', { url: data.url, pending: data.pending, dead: data.dead, oldest: fmtTime(data.oldest_pending_at) || '-' })
    : t('webhooks_off')
  fillTable($('#outbox'), data.deliveries, (d) => {
    let button = ''
    if (d.state === 'dead') {
      button = el('button', t('redrive'), { type: 'button', 'data-redrive': String(d.id) })
      button.addEventListener('click', () => act('confirm_redrive', { id: d.id },
        () => api('POST', 'webhooks/' + d.id + '/redrive'), 'done_redrive'))
    }
    return [d.id, d.event_id, d.type, d.user_id, t(d.state), d.attempts, fmtTime(d.created_at),
      d.state === 'dead' ? '' : fmtTime(d.next_at), d.last_error, button]
  })
}

// ---- dashboard: hand-drawn SVG ----

const SVG = 'http://www.w3.org/2000/svg'
const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f']

function svgEl(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag)
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v))
  if (text !== undefined) e.textContent = text
  return e
}

// Draws `series` ([{name, color, values: [number|null] per minute}]) over `labels` (minutes).
function drawChart(svg, labels, series) {
  svg.replaceChildren()
  const W = 720, H = 200, L = 44, R = 10, T = 10, B = 24
  const all = series.flatMap((s) => s.values.filter((v) => v !== null && v !== undefined))
  // Counts get whole-number gridlines; latencies one decimal.
  const counts = all.every((v) => Number.isInteger(v))
  const top = Math.max(1, ...all)
  const max = counts ? Math.ceil(top / 4) * 4 : top
  const x = (i) => L + (labels.length <= 1 ? 0 : (i * (W - L - R)) / (labels.length - 1))
  const y = (v) => H - B - (v * (H - T - B)) / max
  for (let k = 0; k <= 4; k++) {
    const v = (max * k) / 4
    svg.append(svgEl('line', { class: 'grid', x1: L, x2: W - R, y1: y(v), y2: y(v) }))
    svg.append(svgEl('text', { x: L - 4, y: y(v) + 3, 'text-anchor': 'end' }, counts || v >= 10 ? v.toFixed(0) : v.toFixed(1)))
  }
  svg.append(svgEl('line', { class: 'axis', x1: L, x2: W - R, y1: H - B, y2: H - B }))
  svg.append(svgEl('line', { class: 'axis', x1: L, x2: L, y1: T, y2: H - B }))
  labels.forEach((label, i) => {
    if (i % 10 === 0 || i === labels.length - 1) {
      const anchor = i === labels.length - 1 ? 'end' : i === 0 ? 'start' : 'middle'
      svg.append(svgEl('text', { x: x(i), y: H - 6, 'text-anchor': anchor }, label.slice(11, 16)))
    }
  })
  for (const s of series) {
    const points = []
    s.values.forEach((v, i) => { if (v !== null && v !== undefined) points.push([x(i), y(v), v, i]) })
    if (points.length > 1) {
      svg.append(svgEl('polyline', { stroke: s.color, points: points.map((p) => p[0].toFixed(1) + ',' + p[1].toFixed(1)).join(' ') }))
    }
    for (const [px, py, v, i] of points) {
      if (v === 0) continue
      const c = svgEl('circle', { cx: px.toFixed(1), cy: py.toFixed(1), r: 2.5, fill: s.color, 'data-series': s.name })
      c.append(svgEl('title', {}, s.name + ' ' + labels[i].slice(11, 16) + ': ' + v))
      svg.append(c)
    }
  }
}

async function showDashboard() {
  show('dashboard')
  const draw = async () => {
    const data = await api('GET', 'dashboard')
    const labels = data.minutes.map((m) => m.minute)
    drawChart($('#chart-logins'), labels, [{ name: 'logins', color: PALETTE[0], values: data.minutes.map((m) => m.logins) }])
    const codes = [...new Set(data.minutes.flatMap((m) => Object.keys(m.login_errors)))].sort()
    const errorSeries = codes.map((code, k) => ({
      name: code, color: PALETTE[(k + 1) % PALETTE.length], values: data.minutes.map((m) => m.login_errors[code] || 0),
    }))
    drawChart($('#chart-errors'), labels, errorSeries)
    const legend = $('#errors-legend')
    legend.replaceChildren(...errorSeries.map((s) => {
      const span = el('span', s.name)
      const swatch = el('i')
      swatch.style.background = s.color
      span.prepend(swatch)
      return span
    }))
    drawChart($('#chart-latency'), labels, [
      { name: 'p50', color: PALETTE[0], values: data.minutes.map((m) => m.wechat_p50_ms) },
      { name: 'p99', color: PALETTE[1], values: data.minutes.map((m) => m.wechat_p99_ms) },
    ])
  }
  await draw()
  refreshTimer = setInterval(() => { draw().catch(() => {}) }, 30000)
}

// ---- routing ----

async function route() {
  if (!sessionStorage.getItem(TOKEN_KEY)) { show('signin'); return }
  const hash = location.hash || '#/users'
  try {
    let m
    if ((m = hash.match(/^#\/users\/(\d+)$/))) await showUser(m[1])
    else if (hash === '#/webhooks') await showWebhooks()
    else if (hash === '#/dashboard') await showDashboard()
    else show('users')
  } catch (e) {
    if (e.status !== 401) flash(e.message, true)
  }
}

function init() {
  applyLanguage()
  $('#lang').addEventListener('click', () => {
    lang = lang === 'zh' ? 'en' : 'zh'
    sessionStorage.setItem(LANG_KEY, lang)
    applyLanguage()
  })
  $('#signin-form').addEventListener('submit', async (ev) => {
    ev.preventDefault()
    sessionStorage.setItem(TOKEN_KEY, $('#token').value.trim())
    $('#token').value = ''
    try {
      const me = await api('GET', 'whoami')
      $('#who').textContent = me.label
      $('#flash').hidden = true
      if (!location.hash || location.hash === '#/signin') location.hash = '#/users'
      else await route()
    } catch (e) {
      if (e.status !== 401) flash(e.message, true)
    }
  })
  $('#signout').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY)
    $('#who').textContent = ''
    show('signin')
  })
  $('#find-form').addEventListener('submit', (ev) => {
    ev.preventDefault()
    $('#flash').hidden = true
    findUsers($('#find-by').value, $('#find-value').value.trim()).catch((e) => { if (e.status !== 401) flash(e.message, true) })
  })
  $('#ban').addEventListener('click', () => act('confirm_ban', { id: userId() },
    () => api('POST', 'users/' + userId() + '/ban', { reason: $('#ban-reason').value }), 'done_ban'))
  $('#unban').addEventListener('click', () => act('confirm_unban', { id: userId() },
    () => api('POST', 'users/' + userId() + '/unban'), 'done_unban'))
  $('#merge').addEventListener('click', () => {
    const from = Number($('#merge-from').value)
    if (!Number.isInteger(from) || from <= 0) return
    act('confirm_merge', { id: userId(), from }, () => api('POST', 'users/' + userId() + '/merge', { from }), 'done_merge')
  })
  $('#revoke-all').addEventListener('click', () => act('confirm_revoke_all', { id: userId() },
    () => api('DELETE', 'users/' + userId() + '/sessions'), 'done_revoke'))
  $('#webhooks-refresh').addEventListener('click', () => {
    showWebhooks().catch((e) => { if (e.status !== 401) flash(e.message, true) })
  })
  $('#delete').addEventListener('click', () => act('confirm_delete', { id: userId() },
    () => api('DELETE', 'users/' + userId()), 'done_delete'))
  window.addEventListener('hashchange', () => { $('#flash').hidden = true; route() })
  if (sessionStorage.getItem(TOKEN_KEY)) {
    api('GET', 'whoami').then((me) => { $('#who').textContent = me.label }).catch(() => {})
  }
  route()
}

document.addEventListener('DOMContentLoaded', init)
