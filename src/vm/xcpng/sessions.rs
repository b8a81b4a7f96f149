//! One XAPI session per pool and user, shared by every xcpng VM (and deploy) on it, held
//! weakly: the last VM to go logs it out. Deploys that start together wait for one login.

use crate::xapi::{Client, XapiConfig, XapiError};
use once_cell::sync::Lazy;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::{Arc, Weak};

type Slot = Arc<Mutex<Weak<Client>>>;

static SESSIONS: Lazy<Mutex<HashMap<String, Slot>>> = Lazy::new(|| Mutex::new(HashMap::new()));

/// The live session for `cfg`'s pool and user, or a new one.
pub fn session(cfg: &XapiConfig) -> Result<Arc<Client>, XapiError> {
    let slot = {
        let mut all = SESSIONS.lock();
        all.retain(|_, s| s.try_lock().is_none_or(|w| w.strong_count() > 0));
        all.entry(cfg.share_key()).or_default().clone()
    };
    let mut weak = slot.lock();
    if let Some(c) = weak.upgrade().filter(|c| c.is_open()) {
        return Ok(c);
    }
    let c = Client::connect(cfg.clone())?;
    *weak = Arc::downgrade(&c);
    Ok(c)
}
