export interface AuthOptions {
  /** wxlogin's base URL, e.g. "https://api.example.com/auth/". */
  baseUrl: string
  /** Needed only when the server serves several apps. */
  appid?: string
  /** Storage key for the token (wx.setStorageSync). Default "wxlogin_token". */
  storageKey?: string
  /** The `wx` object; defaults to the global one. */
  wx?: any
}

export interface RequestResult<T = any> {
  statusCode: number
  data: T
  header: Record<string, string>
}

export interface User {
  id: number
  appid: string
  openid: string
  unionid: string | null
  phone: string | null
  phone_country_code: string | null
  created_at: string
  last_login_at: string
}

export interface PhoneInfo {
  phoneNumber: string
  purePhoneNumber: string
  countryCode: string
}

export interface WxLoginError extends Error {
  /** The server's `error` code (docs/errors.md), or "network", "wx_login_failed", "http_<status>". */
  code: string
  statusCode: number
}

export interface Auth {
  login(): Promise<string>
  getToken(): Promise<string>
  request<T = any>(options: Record<string, any>): Promise<RequestResult<T>>
  me(): Promise<User>
  phone(code: string): Promise<PhoneInfo>
  decrypt<T = any>(encryptedData: string, iv: string): Promise<T>
  checkSession(): Promise<{ valid: boolean }>
  logout(): Promise<void>
}

export function createAuth(options: AuthOptions): Auth
export const WxLoginError: (code: string, message?: string, statusCode?: number) => WxLoginError
