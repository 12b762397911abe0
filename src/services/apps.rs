//! The mini programs this server serves: their credentials, and which one a request means.

use super::{ServiceError, ServiceResult};
use crate::domain::{AppCredentials, AppId};

pub struct Apps {
    list: Vec<AppCredentials>,
}

impl Apps {
    pub fn new(list: Vec<AppCredentials>) -> Self {
        Self { list }
    }

    /// The credentials of a session's app; `None` if it has been removed since the login.
    pub fn get(&self, appid: &AppId) -> Option<&AppCredentials> {
        self.list.iter().find(|a| &a.appid == appid)
    }

    /// The app a login is for: the named one, or the only one.
    pub fn for_login(&self, appid: Option<&str>) -> ServiceResult<&AppCredentials> {
        match appid.filter(|a| !a.is_empty()) {
            Some(id) => {
                self.list
                    .iter()
                    .find(|a| a.appid.as_str() == id)
                    .ok_or(ServiceError::UnknownApp(
                        "this appid is not configured on the server",
                    ))
            }
            None if self.list.len() == 1 => Ok(&self.list[0]),
            None => Err(ServiceError::UnknownApp(
                "several apps are configured: send appid with the code",
            )),
        }
    }
}
