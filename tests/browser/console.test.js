'use strict'
// The dev console, clicked through in a real browser (Debian's Chromium via playwright-core)
// against a real `wxlogin serve --dev`. Saves a screenshot to target/console.png.
const test = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const { chromium } = require('playwright-core')
const { startServer } = require('../../clients/miniprogram/test/server')

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium'

test('the dev console walks through login, /me, phone, decrypt, the account, a fault and logout', async () => {
  const server = await startServer()
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic',
      '--no-first-run', '--disable-component-update', '--disable-sync'],
  })
  const external = []
  try {
    const page = await browser.newPage()
    page.on('request', (r) => { if (!r.url().startsWith(server.url)) external.push(r.url()) })
    await page.goto(server.url + '/_dev')
    const log = page.locator('#log')
    const latest = () => log.locator('.entry').first()

    await page.fill('#user', 'browser-user')
    await page.click('#wxlogin')
    await assert.doesNotReject(page.waitForFunction(() => /code: [0-9a-f]{32}/.test(document.querySelector('#code').textContent)))
    assert.match(await latest().innerText(), /never sent to the client/)

    await page.click('#login')
    await page.waitForFunction(() => /token: wxl_/.test(document.querySelector('#token').textContent))
    const loginEntry = await latest().innerText()
    assert.match(loginEntry, /POST \/login/)
    assert.match(loginEntry, /HTTP 200/)
    assert.match(loginEntry, /"new_user": true/)
    assert.equal(await page.isDisabled('#login'), true, 'a code cannot be sent twice')

    await page.click('#me')
    await page.waitForFunction(() => /GET \/me/.test(document.querySelector('#log .entry').textContent))
    assert.match(await latest().innerText(), /"openid": "o/)

    await page.click('#phone')
    await page.waitForFunction(() => /POST \/phone/.test(document.querySelector('#log .entry').textContent))
    assert.match(await latest().innerText(), /13800138000/)

    await page.click('#decrypt')
    await page.waitForFunction(() => /POST \/decrypt/.test(document.querySelector('#log .entry').textContent))
    assert.match(await latest().innerText(), /"step": 8888/)

    // The account steps: a nickname, an avatar drawn by the browser, the sessions, the export.
    await page.fill('#nickname', '浏览器')
    await page.click('#profile')
    await page.waitForFunction(() => /PATCH \/me/.test(document.querySelector('#log .entry').textContent))
    assert.match(await latest().innerText(), /"nickname": "浏览器"/)
    await page.click('#avatar')
    await page.waitForFunction(() => /PUT \/me\/avatar/.test(document.querySelector('#log .entry').textContent))
    assert.match(await latest().innerText(), /HTTP 200/)
    await page.waitForFunction(() => document.querySelector('#avatar-img').naturalWidth === 64)
    await page.click('#sessions')
    await page.waitForFunction(() => /GET \/me\/sessions/.test(document.querySelector('#log .entry').textContent))
    assert.match(await latest().innerText(), /"current": true/)
    await page.click('#export')
    await page.waitForFunction(() => /GET \/me\/export/.test(document.querySelector('#log .entry').textContent))
    assert.match(await latest().innerText(), /"profile_updated"/)

    // A fault: WeChat busy twice → the next login answers 503 with the documented error.
    await page.selectOption('#fault', { index: 1 })
    await page.click('#inject')
    await page.click('#wxlogin')
    await page.waitForFunction(() => /code: [0-9a-f]{32}/.test(document.querySelector('#code').textContent))
    await page.click('#login')
    await page.waitForFunction(() => /POST \/login/.test(document.querySelector('#log .entry').textContent))
    const failed = await latest().innerText()
    assert.match(failed, /HTTP 503/)
    assert.match(failed, /wechat_unavailable/)

    await page.click('#logout')
    await page.waitForFunction(() => /POST \/logout/.test(document.querySelector('#log .entry').textContent))
    assert.match(await page.locator('#token').innerText(), /token: —/)

    // Another platform's app, picked in the console: its own login call, exchange and faults.
    await page.waitForFunction(() => document.querySelectorAll('#app option').length === 6)
    await page.selectOption('#app', 'qqdevapp')
    assert.equal(await page.locator('#wxlogin').innerText(), 'qq.login()')
    await page.click('#wxlogin')
    await page.waitForFunction(() => /code: [0-9a-f]{32}/.test(document.querySelector('#code').textContent))
    await page.click('#login')
    await page.waitForFunction(() => /token: wxl_/.test(document.querySelector('#token').textContent))
    assert.match(await latest().innerText(), /"appid":"qqdevapp"/)
    await page.click('#me')
    await page.waitForFunction(() => /GET \/me/.test(document.querySelector('#log .entry').textContent))
    assert.match(await latest().innerText(), /"platform": "qq"/)
    await page.selectOption('#fault', { index: 1 })
    await page.click('#inject')
    await page.waitForFunction(() => /POST \/_sim\/faults/.test(document.querySelector('#log .entry').textContent))
    assert.match(await latest().innerText(), /\/qq\/sns\/jscode2session/)
    await page.click('#wxlogin')
    await page.waitForFunction(() => /code: [0-9a-f]{32}/.test(document.querySelector('#code').textContent))
    await page.click('#login')
    await page.waitForFunction(() => /HTTP 503/.test(document.querySelector('#log .entry').textContent))
    assert.match(await latest().innerText(), /wechat_unavailable/)

    const all = await log.innerText()
    assert.doesNotMatch(all, /"session_key": "[A-Za-z0-9+/=]{24}"/, 'no session_key value is shown')
    await page.screenshot({ path: path.resolve(__dirname, '../../target/console.png'), fullPage: true })
    assert.deepEqual(external, [], 'the console loads nothing from outside')
  } finally {
    await browser.close()
    server.stop()
  }
})
