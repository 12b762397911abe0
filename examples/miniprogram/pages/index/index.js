const config = require('../../config.js')
const { auth } = getApp()

Page({
  data: { user: null, phone: '', orders: null, error: '' },

  onLoad() {
    this.refresh()
  },

  refresh() {
    auth.me()
      .then((user) => this.setData({ user, phone: user.phone || '', error: '' }))
      .catch((e) => this.setData({ error: `${e.code}: ${e.message}` }))
  },

  // <button open-type="getPhoneNumber">: e.detail.code goes straight to wxlogin. Do not call
  // wx.login here: it would rotate the session_key the server holds.
  onGetPhoneNumber(e) {
    if (!e.detail.code) return this.setData({ error: 'phone number not granted' })
    auth.phone(e.detail.code)
      .then((info) => this.setData({ phone: info.phoneNumber, error: '' }))
      .catch((err) => this.setData({ error: `${err.code}: ${err.message}` }))
  },

  // A protected business API: the token is attached, a 401 re-logs in once and replays.
  loadOrders() {
    auth.request({ url: config.apiBaseUrl + 'orders', method: 'GET' })
      .then((res) => this.setData({ orders: JSON.stringify(res.data), error: '' }))
      .catch((e) => this.setData({ error: `${e.code}: ${e.message}` }))
  },

  logout() {
    auth.logout().then(() => this.setData({ user: null, phone: '', orders: null }))
  },

  login() {
    auth.login().then(() => this.refresh())
  },
})
