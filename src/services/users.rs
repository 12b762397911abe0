//! Users: the person behind a token — profile, avatar, phone, the data export — and the
//! account actions an operator or the user takes (ban, unban, merge, delete), with the event
//! log. Every action that ends sessions tells every instance through the session service
//! before it returns.

use super::sessions::Sessions;
use super::user_cache::UserCache;
use super::{ServiceError, ServiceResult};
use crate::clock::{Millis, SharedClock};
use crate::domain::{ClientInfo, ImageKind, Nickname, NicknameError, UserId, UserStatus};
use crate::store::{
    Audit, Avatar, EventFilter, EventRecord, PhoneBinding, ProfileChange, SessionSummary,
    UserFilter, UserRecord, UserStore,
};
use crate::wechat::PhoneInfo;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

/// Everything stored about a user (`GET /me/export`).
#[derive(Debug, Clone)]
pub struct Export {
    pub user: UserRecord,
    pub sessions: Vec<SessionSummary>,
    pub events: Vec<EventRecord>,
}

/// Most events one export or one page of the event log carries.
pub const MAX_EVENTS: u32 = 1000;

#[derive(Clone)]
pub struct Users {
    store: Arc<dyn UserStore>,
    sessions: Sessions,
    clock: SharedClock,
    /// How long a bound phone number is answered again without asking WeChat; `None`: always ask.
    phone_reuse: Option<Duration>,
    /// Told after a change that queues a webhook, so it goes out now, not at the next poll.
    webhooks: Arc<super::webhooks::Webhooks>,
    /// On PostgreSQL + Redis: the users `/me` shows, in memory (see `user_cache.rs`).
    cache: Option<Arc<UserCache>>,
}

impl Users {
    pub fn new(
        store: Arc<dyn UserStore>,
        sessions: Sessions,
        clock: SharedClock,
        phone_reuse: Option<Duration>,
        webhooks: Arc<super::webhooks::Webhooks>,
        cache: Option<Arc<UserCache>>,
    ) -> Self {
        Self {
            store,
            sessions,
            clock,
            phone_reuse,
            webhooks,
            cache,
        }
    }

    /// The in-memory user cache, when there is one (its subscription runs in `app.rs`).
    pub fn cache(&self) -> Option<Arc<UserCache>> {
        self.cache.clone()
    }

    /// After a committed change to `id`: every instance forgets its copy.
    async fn changed(&self, id: UserId) {
        if let Some(cache) = &self.cache {
            cache.changed(id).await;
        }
    }

    fn audit<'a>(&self, client: &'a ClientInfo) -> Audit<'a> {
        Audit {
            now: self.clock.now_ms(),
            client,
        }
    }

    /// The user of a live session. A session whose user is gone is no session.
    pub async fn of_session(&self, id: UserId) -> ServiceResult<UserRecord> {
        if let Some(user) = self.cache.as_ref().and_then(|c| c.get(id)) {
            return Ok(user);
        }
        let seen = self.cache.as_ref().map(|c| c.generation());
        let user = self
            .store
            .find_user(id)
            .await?
            .filter(|u| u.status == UserStatus::Active)
            .ok_or(ServiceError::Unauthorized)?;
        if let (Some(cache), Some(seen)) = (&self.cache, seen) {
            cache.put(&user, seen);
        }
        Ok(user)
    }

    /// Users matching every given field (at most 100); at least one field is needed.
    pub async fn find(&self, filter: &UserFilter) -> ServiceResult<Vec<UserRecord>> {
        if filter.is_empty() {
            return Err(ServiceError::BadInput(
                "give at least one of id, openid, unionid, phone",
            ));
        }
        Ok(self.store.find_users(filter).await?)
    }

    /// One user, deleted ones included (their tombstone).
    pub async fn get(&self, id: UserId) -> ServiceResult<UserRecord> {
        self.store
            .find_user(id)
            .await?
            .ok_or(ServiceError::NotFound)
    }

    /// The stored number, if one is bound and still fresh enough to answer without WeChat.
    pub async fn fresh_phone(&self, id: UserId) -> ServiceResult<Option<PhoneInfo>> {
        let Some(reuse) = self.phone_reuse else {
            return Ok(None);
        };
        let user = self.of_session(id).await?;
        let now = self.clock.now_ms();
        let fresh = |at: Millis| now - at < reuse.as_millis() as Millis;
        Ok(match (user.phone, user.phone_bound_at) {
            (Some(phone), Some(at)) if fresh(at) => {
                let country_code = user.phone_country_code.unwrap_or_default();
                let pure = phone
                    .strip_prefix(&format!("+{country_code}"))
                    .unwrap_or(&phone)
                    .to_owned();
                Some(PhoneInfo {
                    phone_number: phone,
                    pure_phone_number: pure,
                    country_code,
                })
            }
            _ => None,
        })
    }

    /// Binds a number WeChat vouched for; `PhoneInUse` if another user holds it.
    pub async fn bind_phone(
        &self,
        id: UserId,
        phone: &PhoneInfo,
        client: &ClientInfo,
    ) -> ServiceResult<()> {
        let audit = self.audit(client);
        match self
            .store
            .bind_phone(id, &phone.phone_number, &phone.country_code, audit)
            .await?
        {
            PhoneBinding::Bound => {
                self.changed(id).await;
                Ok(())
            }
            PhoneBinding::InUse => Err(ServiceError::PhoneInUse),
            PhoneBinding::NotActive => Err(ServiceError::Unauthorized),
        }
    }

    pub async fn set_nickname(
        &self,
        id: UserId,
        nickname: &str,
        client: &ClientInfo,
    ) -> ServiceResult<()> {
        let nickname = Nickname::parse(nickname).map_err(|e| match e {
            NicknameError::Placeholder => ServiceError::PlaceholderNickname,
            NicknameError::Length => {
                ServiceError::BadInput("nickname must be 1 to 32 characters after trimming")
            }
        })?;
        let change = ProfileChange {
            nickname: Some(nickname.as_str().to_owned()),
            avatar: None,
        };
        self.change_profile(id, &change, client).await
    }

    /// Stores an avatar (once per content) and makes it the user's; returns its file name.
    pub async fn set_avatar(
        &self,
        id: UserId,
        bytes: &[u8],
        client: &ClientInfo,
    ) -> ServiceResult<String> {
        if bytes.len() > ImageKind::MAX_AVATAR_BYTES {
            return Err(ServiceError::ImageTooLarge);
        }
        let kind = ImageKind::sniff(bytes).ok_or(ServiceError::UnsupportedImage)?;
        let sha256 = hex::encode(Sha256::digest(bytes));
        let avatar = Avatar {
            sha256: sha256.clone(),
            content_type: kind.content_type().to_owned(),
            bytes: bytes.to_vec(),
        };
        self.store.put_avatar(&avatar, self.clock.now_ms()).await?;
        let name = format!("{sha256}.{}", kind.extension());
        let change = ProfileChange {
            nickname: None,
            avatar: Some(name.clone()),
        };
        self.change_profile(id, &change, client).await?;
        Ok(name)
    }

    async fn change_profile(
        &self,
        id: UserId,
        change: &ProfileChange,
        client: &ClientInfo,
    ) -> ServiceResult<()> {
        if self
            .store
            .update_profile(id, change, self.audit(client))
            .await?
        {
            self.changed(id).await;
            Ok(())
        } else {
            Err(ServiceError::Unauthorized)
        }
    }

    /// An avatar by its file name (`<sha256>.<ext>`), if stored under that exact name.
    pub async fn avatar(&self, name: &str) -> ServiceResult<Avatar> {
        let (sha256, ext) = name.split_once('.').ok_or(ServiceError::NotFound)?;
        let kind = ImageKind::from_extension(ext).ok_or(ServiceError::NotFound)?;
        let valid = sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit());
        if !valid {
            return Err(ServiceError::NotFound);
        }
        match self.store.avatar(&sha256.to_ascii_lowercase()).await? {
            Some(a) if a.content_type == kind.content_type() => Ok(a),
            _ => Err(ServiceError::NotFound),
        }
    }

    /// Everything stored about the user: the account, identities, sessions, events.
    pub async fn export(&self, id: UserId) -> ServiceResult<Export> {
        let user = self.of_session(id).await?;
        let sessions = self.sessions.list(id).await?;
        let events = self
            .store
            .events(&EventFilter {
                user_id: Some(id),
                limit: MAX_EVENTS,
                ..EventFilter::default()
            })
            .await?;
        Ok(Export {
            user,
            sessions,
            events,
        })
    }

    /// The user's own deletion (注销): every session revoked on every instance, personal data
    /// erased, the tombstone kept.
    pub async fn delete(&self, id: UserId, client: &ClientInfo) -> ServiceResult<()> {
        let change = self
            .sessions
            .invalidating(self.store.delete_user(id, self.audit(client)))
            .await?;
        // Not found may be the retry of a deletion answered 503: the round trip finishes it.
        let tokens = change.as_ref().map_or(&[][..], |c| &c.tokens[..]);
        self.sessions.broadcast_end(tokens).await?;
        let Some(_) = change else {
            return Err(ServiceError::NotFound);
        };
        self.changed(id).await;
        self.webhooks.wake();
        tracing::info!(user_id = id, "user deleted");
        Ok(())
    }

    pub async fn ban(&self, id: UserId, reason: &str, client: &ClientInfo) -> ServiceResult<()> {
        let change = self
            .sessions
            .invalidating(self.store.ban_user(id, reason, self.audit(client)))
            .await?
            .ok_or(ServiceError::NotFound)?;
        self.changed(id).await;
        self.webhooks.wake();
        self.sessions.broadcast_end(&change.tokens).await?;
        tracing::info!(user_id = id, revoked = change.tokens.len(), "user banned");
        Ok(())
    }

    pub async fn unban(&self, id: UserId, client: &ClientInfo) -> ServiceResult<()> {
        if self.store.unban_user(id, self.audit(client)).await? {
            self.changed(id).await;
            self.webhooks.wake();
            tracing::info!(user_id = id, "user unbanned");
            Ok(())
        } else {
            Err(ServiceError::NotFound)
        }
    }

    /// Moves `from` into `into` (identities, sessions, phone if `into` has none) and deletes
    /// `from`, in one transaction; every instance stops answering from what it cached before.
    pub async fn merge(
        &self,
        into: UserId,
        from: UserId,
        client: &ClientInfo,
    ) -> ServiceResult<()> {
        self.sessions
            .invalidating(self.store.merge_users(into, from, self.audit(client)))
            .await?
            .ok_or(ServiceError::NotFound)?;
        self.sessions.moved().await;
        self.changed(into).await;
        self.changed(from).await;
        self.webhooks.wake();
        tracing::info!(user_id = into, from, "users merged");
        Ok(())
    }

    pub async fn events(&self, filter: &EventFilter) -> ServiceResult<Vec<EventRecord>> {
        let filter = EventFilter {
            limit: filter.limit.clamp(1, MAX_EVENTS),
            ..filter.clone()
        };
        Ok(self.store.events(&filter).await?)
    }
}
