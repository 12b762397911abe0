// Where wxlogin and your business API live. With `wxlogin serve --dev` on this machine, the
// simulator stands in for WeChat, so use the dev console (http://127.0.0.1:8000/_dev) to get
// codes; against real WeChat, run `wxlogin serve` with your AppId/AppSecret and set your domain.
module.exports = {
  // wxlogin itself (POST login/, GET me, POST phone, ...)
  authBaseUrl: 'http://127.0.0.1:8000/',
  // A business API behind nginx auth_request → wxlogin GET /auth (see deploy/nginx-wxlogin.conf)
  apiBaseUrl: 'http://127.0.0.1:8080/api/',
}
