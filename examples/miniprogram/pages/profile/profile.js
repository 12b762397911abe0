const { auth } = getApp()

// The account page: avatar from <button open-type="chooseAvatar">, nickname from
// <input type="nickname">, the user's sessions on every device, data export and 注销.
Page({
  data: { user: null, avatarUrl: '', nickname: '', sessions: [], exported: '', error: '' },

  onShow() {
    this.refresh()
  },

  refresh() {
    Promise.all([auth.me(), auth.sessions()])
      .then(([user, sessions]) => this.setData({
        user,
        nickname: user.nickname || '',
        avatarUrl: this.absolute(user.avatar_url),
        sessions,
        error: '',
      }))
      .catch((e) => this.setData({ error: `${e.code}: ${e.message}` }))
  },

  // avatar_url is relative to wxlogin's base URL unless the server has WXLOGIN_PUBLIC_URL.
  absolute(url) {
    if (!url || /^https?:\/\//.test(url)) return url || ''
    return require('../../config.js').authBaseUrl + url
  },

  // chooseAvatar hands over a temporary file: upload it (wx.uploadFile) before showing it.
  onChooseAvatar(e) {
    auth.uploadAvatar(e.detail.avatarUrl)
      .then(({ avatar_url }) => this.setData({ avatarUrl: this.absolute(avatar_url), error: '' }))
      .catch((err) => this.setData({ error: `${err.code}: ${err.message}` }))
  },

  // The nickname input fills in WeChat's nickname when the user picks it; save on blur. Its
  // placeholder 微信用户 is refused by the server (placeholder_nickname).
  onNicknameBlur(e) {
    const nickname = (e.detail.value || '').trim()
    if (!nickname || nickname === (this.data.user && this.data.user.nickname)) return
    auth.updateProfile({ nickname })
      .then((user) => this.setData({ user, nickname: user.nickname, error: '' }))
      .catch((err) => this.setData({ error: `${err.code}: ${err.message}` }))
  },

  endSession(e) {
    auth.endSession(e.currentTarget.dataset.id).then(() => this.refresh())
  },

  logoutAll() {
    auth.logoutAll().then(() => wx.reLaunch({ url: '/pages/index/index' }))
  },

  exportData() {
    auth.exportData()
      .then((data) => this.setData({ exported: JSON.stringify(data, null, 2) }))
      .catch((e) => this.setData({ error: `${e.code}: ${e.message}` }))
  },

  deleteAccount() {
    wx.showModal({
      title: '注销账号',
      content: 'This erases your account on this service. It cannot be undone.',
      confirmColor: '#c00',
      success: (res) => {
        if (!res.confirm) return
        auth.deleteAccount().then(() => wx.reLaunch({ url: '/pages/index/index' }))
      },
    })
  },
})
