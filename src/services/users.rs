//! Users: the profile a token resolves to, the admin look-ups, and the phone number bound to a
//! user. The accounts work (profiles, identities, deletion) grows here.

use super::{ServiceError, ServiceResult};
use crate::domain::UserId;
use crate::store::{UserFilter, UserRecord, UserStore};
use crate::wechat::PhoneInfo;
use std::sync::Arc;

#[derive(Clone)]
pub struct Users {
    store: Arc<dyn UserStore>,
}

impl Users {
    pub fn new(store: Arc<dyn UserStore>) -> Self {
        Self { store }
    }

    /// The user of a live session. A session whose user is gone is no session.
    pub async fn of_session(&self, id: UserId) -> ServiceResult<UserRecord> {
        self.store
            .find_user(id)
            .await?
            .ok_or(ServiceError::Unauthorized)
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

    pub async fn bind_phone(&self, id: UserId, phone: &PhoneInfo) -> ServiceResult<()> {
        Ok(self
            .store
            .set_phone(id, &phone.phone_number, &phone.country_code)
            .await?)
    }
}
