'use strict'
// The admin console, clicked through in a real browser (Debian's Chromium via playwright-core)
// against a real `wxlogin serve --dev` with webhooks to a local receiver. Saves a screenshot of
// each page under target/.
const test = require('node:test')
const assert = require('node:assert/strict')
const http = require('node:http')
const path = require('node:path')
const { chromium } = require('playwright-core')
const { startServer } = require('../../clients/miniprogram/test/server')

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium'
const OPS_TOKEN = 'ops-console-token-0123456789'
const shot = (name) => path.resolve(__dirname, '../../target', name)

// A webhook receiver that answers `status` and records what it got.
function startReceiver() {
  const receiver = { status: 500, got: [] }
  const server = http.createServer((req, res) => {
    let body = ''
    req.on('data', (c) => { body += c })
    req.on('end', () => {
      receiver.got.push({ id: Number(req.headers['x-wxlogin-event-id']), body, answered: receiver.status })
      res.writeHead(receiver.status)
      res.end()
    })
  })
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => {
    receiver.url = `http://127.0.0.1:${server.address().port}/hook`
    receiver.close = () => server.close()
    resolve(receiver)
  }))
}

async function json(url, options) {
  const res = await fetch(url, options)
  return { status: res.status, body: await res.json().catch(() => null) }
}

async function until(what, check, ms = 30000) {
  const started = Date.now()
  for (;;) {
    if (await check()) return
    if (Date.now() - started > ms) throw new Error(`waited ${ms} ms for ${what}`)
    await new Promise((r) => setTimeout(r, 200))
  }
}

test('the admin console signs in, finds, bans, unbans and deletes users, re-drives a webhook and draws the dashboard', async () => {
  const receiver = await startReceiver()
  const server = await startServer({
    env: {
      WXLOGIN_ADMIN_TOKEN: `ops:${OPS_TOKEN}`,
      WXLOGIN_WEBHOOK_URL: receiver.url,
      WXLOGIN_WEBHOOK_SECRET: 'console-webhook-secret-0123',
      WXLOGIN_WEBHOOK_TIMEOUT: '1s',
      // Short, so the failing receiver's first webhook dies within the test.
      WXLOGIN_WEBHOOK_RETRY_FOR: '3s',
    },
  })
  const login = async (user) => {
    const wx = (await json(server.url + '/_sim/codes', {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ appid: 'wxdevapp', user }),
    })).body
    const r = await json(server.url + '/login', {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ code: wx.code }),
    })
    assert.equal(r.status, 200, JSON.stringify(r.body))
    const me = await json(server.url + '/me', { headers: { authorization: 'Bearer ' + r.body.data.token } })
    return { token: r.body.data.token, openid: wx.openid, id: me.body.data.id }
  }
  const victim = await login('console-victim')
  const goner = await login('console-goner')
  // A failed login, for the errors chart.
  const bad = await json(server.url + '/login', {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ code: 'f'.repeat(32) }),
  })
  assert.equal(bad.status, 401)

  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic',
      '--no-first-run', '--disable-component-update', '--disable-sync'],
  })
  const external = []
  const urls = []
  const cspErrors = []
  try {
    const page = await browser.newPage()
    page.on('request', (r) => { urls.push(r.url()); if (!r.url().startsWith(server.url)) external.push(r.url()) })
    page.on('console', (m) => { if (/Content Security Policy|Refused to/.test(m.text())) cspErrors.push(m.text()) })
    const dialogs = []
    page.on('dialog', (d) => { dialogs.push(d.message()); d.accept() })

    const res = await page.goto(server.url + '/admin/')
    assert.match(res.headers()['content-security-policy'], /script-src 'self'/)

    // A wrong token is refused and stays on the sign-in page.
    await page.fill('#token', 'wrong-token-0123456789abcdef')
    await page.click('#signin-form button')
    await page.waitForFunction(() => /refused|拒绝/.test(document.querySelector('#flash').textContent))
    assert.equal(await page.isVisible('#page-signin'), true)
    await page.screenshot({ path: shot('admin-signin.png') })

    await page.fill('#token', OPS_TOKEN)
    await page.click('#signin-form button')
    await page.waitForSelector('#page-users:not([hidden])')
    assert.equal(await page.locator('#who').innerText(), 'ops')

    // Find the simulator's user by openid and open their page.
    await page.selectOption('#find-by', 'openid')
    await page.fill('#find-value', victim.openid)
    await page.click('#find-form button')
    await page.waitForSelector('#found tbody tr.link')
    await page.click('#found tbody tr.link')
    await page.waitForFunction((id) => document.querySelector('#user-id').textContent === '#' + id, victim.id)
    assert.match(await page.locator('#identities').innerText(), new RegExp(victim.openid))
    assert.match(await page.locator('#sessions').innerText(), /wxdevapp/)
    assert.match(await page.locator('#events').innerText(), /user_created/)

    // Ban (asked first): their token stops working at once.
    await page.fill('#ban-reason', 'console test')
    await page.click('#ban')
    await page.waitForFunction(() => document.querySelector('#user-status').textContent === 'banned')
    assert.match(dialogs.pop(), new RegExp(`${victim.id}`))
    const me = await fetch(server.url + '/me', { headers: { authorization: 'Bearer ' + victim.token } })
    assert.equal(me.status, 401)
    assert.match(await page.locator('#events').innerText(), /user_banned[\s\S]*admin:ops/)

    await page.click('#unban')
    await page.waitForFunction(() => document.querySelector('#user-status').textContent === 'active')
    assert.match(await page.locator('#events').innerText(), /user_unbanned/)
    await page.screenshot({ path: shot('admin-user.png'), fullPage: true })

    // Delete the other user (asked first).
    await page.click('nav a[href="#/users"]')
    await page.selectOption('#find-by', 'id')
    await page.fill('#find-value', String(goner.id))
    await page.click('#find-form button')
    await page.waitForSelector('#found tbody tr.link')
    await page.click('#found tbody tr.link')
    await page.waitForFunction((id) => document.querySelector('#user-id').textContent === '#' + id, goner.id)
    await page.click('#delete')
    await page.waitForFunction(() => document.querySelector('#user-status').textContent === 'deleted')
    assert.match(dialogs.pop(), /cannot be undone|无法恢复/)
    const gone = await fetch(server.url + '/me', { headers: { authorization: 'Bearer ' + goner.token } })
    assert.equal(gone.status, 401)

    // The receiver has failed every webhook so far: the first dies, and is re-driven once it is fixed.
    await page.click('nav a[href="#/webhooks"]')
    await page.waitForSelector('#page-webhooks:not([hidden])')
    await until('a dead webhook in the console', async () => {
      await page.click('#webhooks-refresh')
      await page.waitForTimeout(300)
      return (await page.locator('[data-redrive]').count()) > 0
    })
    await page.screenshot({ path: shot('admin-webhooks.png'), fullPage: true })
    receiver.status = 200
    const deadId = Number(await page.locator('#outbox tbody tr:has([data-redrive]) td').nth(1).innerText())
    await page.locator('[data-redrive]').first().click()
    await page.waitForFunction(() => /queued again|重新排队/.test(document.querySelector('#flash').textContent))
    await until('the re-driven webhook to be delivered', () =>
      receiver.got.some((g) => g.id === deadId && g.answered === 200))

    // The dashboard's charts have points for the logins and the failed login.
    await page.click('nav a[href="#/dashboard"]')
    await page.waitForFunction(() => document.querySelectorAll('#chart-logins circle').length > 0)
    assert.ok(await page.locator('#chart-errors circle').count() > 0, 'the failed login is drawn')
    assert.match(await page.locator('#errors-legend').innerText(), /invalid_code/)
    await page.screenshot({ path: shot('admin-dashboard.png'), fullPage: true })

    // 中文 labels.
    await page.click('#lang')
    assert.equal(await page.locator('nav a[href="#/dashboard"]').innerText(), '仪表盘')
    await page.click('#lang')

    await page.click('#signout')
    await page.waitForSelector('#page-signin:not([hidden])')
    assert.equal(await page.evaluate(() => sessionStorage.length === 0 || !sessionStorage.getItem('wxlogin.admin.token')), true)

    assert.deepEqual(external, [], 'the console loads nothing from outside')
    assert.deepEqual(cspErrors, [], 'nothing the CSP blocks')
    assert.ok(urls.every((u) => !u.includes(OPS_TOKEN)), 'the token never appears in a URL')
  } finally {
    await browser.close()
    server.stop()
    receiver.close()
  }
})
