const { createAuth } = require('wxlogin-miniprogram')
const config = require('./config.js')

App({
  // One auth object for the whole app: pages share its single-flight login and token.
  auth: createAuth({ baseUrl: config.authBaseUrl }),
  onLaunch() {
    // Log in early; pages that need the token before this finishes simply wait for it.
    this.auth.getToken().catch((e) => console.warn('login failed:', e.code, e.message))
  },
})
