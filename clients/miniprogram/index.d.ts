export interface AuthOptions {
  /** wxlogin's base URL, e.g. "https://api.example.com/auth/". */
  baseUrl: string
  /** Needed only when the server serves several apps. */
  appid?: string
  /** Storage key for the token (wx.setStorageSync). Default "wxlogin_token". */
  storageKey?: string
  /**
   * The platform; found from the runtime's global when absent (qq, tt, swan, ks, my, then wx).
   */
  platform?: Platform
  /** The platform's API object (`wx`, `qq`, `tt`, `swan`, `ks`, `my`); defaults to the global one. */
  api?: any
  /** The `wx` object (the same as `api` for WeChat); defaults to the global one. */
  wx?: any
  /**
   * Douyin only: call `tt.login({force: false})` (no sign-in prompt) and let a user who is not
   * signed in to Douyin log in with the `anonymousCode` alone, as a guest account that becomes
   * theirs when they sign in on that device. Default false (tt.login's own prompt).
   */
  anonymous?: boolean
}

export type Platform = 'weixin' | 'qq' | 'douyin' | 'baidu' | 'kuaishou' | 'alipay'

export interface RequestResult<T = any> {
  statusCode: number
  data: T
  header: Record<string, string>
}

export interface Identity {
  platform: string
  appid: string
  openid: string
  unionid: string | null
}

export interface User {
  id: number
  /** The identity this session logged in with. */
  appid: string
  openid: string
  unionid: string | null
  phone: string | null
  phone_country_code: string | null
  created_at: string
  last_login_at: string
  nickname: string | null
  /** Absolute when the server has WXLOGIN_PUBLIC_URL, else relative to baseUrl. */
  avatar_url: string | null
  status: 'active'
  identities: Identity[]
}

export interface Session {
  id: number
  platform: string | null
  appid: string
  created_at: string
  last_seen_at: string
  expires_at: string
  ip: string | null
  user_agent: string | null
  /** This device's own session. */
  current: boolean
}

export interface AccountEvent {
  id: number
  type: string
  user_id: number | null
  platform: string | null
  appid: string | null
  ip: string | null
  user_agent: string | null
  detail: Record<string, any> | null
  time: string
}

export interface AccountExport {
  user: User
  sessions: Session[]
  events: AccountEvent[]
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
  /** The platform in use. */
  readonly platform: Platform
  login(): Promise<string>
  getToken(): Promise<string>
  request<T = any>(options: Record<string, any>): Promise<RequestResult<T>>
  me(): Promise<User>
  /**
   * `code`: the getPhoneNumber button's `e.detail.code`; on Alipay, `my.getPhoneNumber`'s
   * `res.response` string as it is (the app needs its AES key configured on the server).
   */
  phone(code: string, options?: { refresh?: boolean }): Promise<PhoneInfo>
  decrypt<T = any>(encryptedData: string, iv: string): Promise<T>
  checkSession(): Promise<{ valid: boolean }>
  logout(): Promise<void>
  /** `nickname` from `<input type="nickname">`; "微信用户" is refused (placeholder_nickname). */
  updateProfile(profile: { nickname: string }): Promise<User>
  /** `filePath` from `<button open-type="chooseAvatar">` (e.detail.avatarUrl), sent by wx.uploadFile. */
  uploadAvatar(filePath: string): Promise<{ avatar_url: string }>
  sessions(): Promise<Session[]>
  endSession(id: number): Promise<void>
  logoutAll(): Promise<void>
  deleteAccount(): Promise<void>
  exportData(): Promise<AccountExport>
}

export function createAuth(options: AuthOptions): Auth
export const WxLoginError: (code: string, message?: string, statusCode?: number) => WxLoginError
